//! `-l`: the targets the chosen backend can trace.
use std::io::{self, BufWriter, Write};

use ipft_output::json::json_str;

use super::sink::ignore_broken_pipe;
use crate::discover::Target;

/// `-l`: the header on stderr (not with `json`), the list on stdout; a
/// reader that stops reading early is no error.
pub fn print(targets: &[Target], json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!("{}", header());
    }
    let mut out = io::stdout().lock();
    ignore_broken_pipe(write(&mut out, targets, json).and_then(|()| out.flush()))
}

/// The header line of the `-l` list, without its newline, to be printed on
/// stderr (as ipftrace2 did) so that stdout holds only rows. Aligned with
/// [`list`]'s rows.
pub fn header() -> String {
    format!(
        "{:>64}\t{:>16}\t{:>18}\t{}",
        "NAME", "MODULE", "ADDRESS", "SKB_POSITION"
    )
}

/// Writes the `-l` list, one target per line.
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
pub fn write(out: &mut dyn Write, targets: &[Target], json: bool) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    for t in targets {
        if json {
            list_json(&mut out, t)?;
        } else {
            writeln!(
                out,
                "{:>64}\t{:>16}\t{:#018x}\t{}",
                t.name, t.module, t.addr, t.skb_pos
            )?;
        }
    }
    out.flush()
}

/// One `-l` entry as a JSON line.
fn list_json(out: &mut dyn Write, t: &Target) -> io::Result<()> {
    out.write_all(br#"{"name":"#)?;
    json_str(out, &t.name)?;
    out.write_all(br#","module":"#)?;
    json_str(out, &t.module)?;
    writeln!(
        out,
        r#","address":"{:#018x}","skb_position":{}}}"#,
        t.addr, t.skb_pos
    )
}
