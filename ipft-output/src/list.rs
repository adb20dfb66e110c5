//! `-l`: the functions and tracepoints a backend can trace, one a line.
use std::io::{self, BufWriter, Write};

use crate::json::json_str;

/// One traceable function or tracepoint.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub module: &'a str,
    /// Its address (0 for a tracepoint).
    pub addr: u64,
    /// Which argument is the `struct sk_buff *`.
    pub skb_pos: u8,
}

/// The header line of the `-l` list, without its newline, to be printed on
/// stderr (as ipftrace2 did) so that stdout holds only rows. Aligned with
/// [`write`]'s rows.
pub fn header() -> String {
    format!(
        "{:>64}\t{:>16}\t{:>18}\t{}",
        "NAME", "MODULE", "ADDRESS", "SKB_POSITION"
    )
}

/// Writes the `-l` list, one entry per line.
///
/// Table form is ipftrace2's `%64.64s\t%16.16s\t0x%016lx\t%d` (tab-separated,
/// names right-aligned), except that long names and modules are not cut: a
/// listed name is meant to be copied into `-r`, so a truncated one is
/// useless; the tabs keep such rows parseable. With `json`, one object per
/// line: `{"name":"…","module":"…","address":"0x…","skb_position":N}`, the
/// address with the same 16 hex digits. Tracepoints show their name as is and
/// address 0.
///
/// Output is buffered here, so an unbuffered `out` is fine.
pub fn write<'a>(
    out: &mut dyn Write,
    entries: impl Iterator<Item = Entry<'a>>,
    json: bool,
) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    for e in entries {
        if json {
            entry_json(&mut out, &e)?;
        } else {
            writeln!(
                out,
                "{:>64}\t{:>16}\t{:#018x}\t{}",
                e.name, e.module, e.addr, e.skb_pos
            )?;
        }
    }
    out.flush()
}

/// One `-l` entry as a JSON line.
fn entry_json(out: &mut dyn Write, e: &Entry) -> io::Result<()> {
    out.write_all(br#"{"name":"#)?;
    json_str(out, e.name)?;
    out.write_all(br#","module":"#)?;
    json_str(out, e.module)?;
    writeln!(
        out,
        r#","address":"{:#018x}","skb_position":{}}}"#,
        e.addr, e.skb_pos
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRIES: [Entry; 7] = [
        entry("ip_rcv", "vmlinux", 0xffffffff81c3a2b0, 0),
        entry(
            "__netif_receive_skb_one_core",
            "vmlinux",
            0xffffffff81b0e130,
            0,
        ),
        entry(
            "a_function_name_that_is_longer_than_32_chars",
            "module_name_longer_than_24_chars",
            0xffffffffc0a01234,
            3,
        ),
        entry("netif_receive_skb", "vmlinux", 0, 0),
        entry("veth_xmit", "veth", 0xffffffffc0b1c020, 0),
        entry("kfree_skbmem", "vmlinux", 0xffffffff81a00010, 0),
        entry(
            "a_function_name_that_is_longer_than_32_chars_and_even_longer_than_64",
            "vmlinux",
            0xffffffff81000040,
            11,
        ),
    ];

    const fn entry<'a>(name: &'a str, module: &'a str, addr: u64, skb_pos: u8) -> Entry<'a> {
        Entry {
            name,
            module,
            addr,
            skb_pos,
        }
    }

    fn render(entries: &[Entry], json: bool) -> String {
        let mut out = Vec::new();
        write(&mut out, entries.iter().copied(), json).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The golden file was printed by C's printf with ipftrace2's format
    /// (long names and modules left uncut, as ipft lists them).
    #[test]
    fn list_table() {
        let text = format!("{}\n{}", header(), render(&ENTRIES, false));
        assert_eq!(text, include_str!("../tests/golden/list.txt"));
    }

    #[test]
    fn list_json() {
        let mut entries = ENTRIES;
        entries[1].name = "quo\"te";
        assert_eq!(
            render(&entries[..4], true),
            concat!(
                r#"{"name":"ip_rcv","module":"vmlinux","address":"0xffffffff81c3a2b0","skb_position":0}"#,
                "\n",
                r#"{"name":"quo\"te","module":"vmlinux","address":"0xffffffff81b0e130","skb_position":0}"#,
                "\n",
                r#"{"name":"a_function_name_that_is_longer_than_32_chars","module":"module_name_longer_than_24_chars","address":"0xffffffffc0a01234","skb_position":3}"#,
                "\n",
                r#"{"name":"netif_receive_skb","module":"vmlinux","address":"0x0000000000000000","skb_position":0}"#,
                "\n",
            )
        );
    }
}
