//! Output: the aggregate table, JSON lines and the `-l` function list.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte, because users'
//! scripts parse them (columns split on whitespace, fixed widths). `tabled`
//! sizes columns from their content and draws its own separators, so it can't
//! reproduce a fixed printf layout, and for `-l` the header goes to stderr
//! separately from the rows, which only fixed widths can keep aligned; the
//! formatting is therefore written directly with `format!` specs that match C's:
//! `%-20s` is `{:<20}`, `%24.24s` is `{:>24.24}`, `%03u` is `{:03}`.
//! Rust's precision cuts on `char`s, so a non-ASCII name can't be split
//! mid-character (C would cut bytes); kernel symbols are ASCII, where the two
//! agree.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, BufWriter, Write},
    ops::Range,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use ipft_common::Event;

use crate::{
    discover::Target,
    group::{depths, Details, GroupList},
    stream::{Record, NONE},
    summary::Field,
};

/// What rows show besides the function: drop reasons by name, packet
/// summaries, and the `--field` values.
#[derive(Clone, Copy, Default)]
pub struct Extras<'a> {
    /// `enum skb_drop_reason` value → name.
    pub reasons: Option<&'a HashMap<u32, String>>,
    /// `--field`, in the order given.
    pub fields: &'a [Field],
    pub details: Option<&'a Details>,
}

impl Extras<'_> {
    fn reason(&self, r: &Record) -> Option<String> {
        if r.drop_reason == NONE {
            return None;
        }
        let name = self.reasons.and_then(|names| names.get(&r.drop_reason));
        // Not drops: a packet freed after use passes these.
        if name.is_some_and(|n| n == "CONSUMED" || n == "NOT_DROPPED_YET") {
            return None;
        }
        Some(name.cloned().unwrap_or_else(|| r.drop_reason.to_string()))
    }

    fn snapshot(&self, r: &Record) -> Option<&Event> {
        self.details?.snapshots.get(r.fields as usize)
    }

    /// ` (drop: REASON) ( len: 84 gso_size: 0 )` after a row; empty when
    /// neither applies.
    fn suffix(&self, r: &Record) -> String {
        let mut out = String::new();
        if let Some(reason) = self.reason(r) {
            out.push_str(&format!(" (drop: {reason})"));
        }
        if let (false, Some(event)) = (self.fields.is_empty(), self.snapshot(r)) {
            out.push_str(" (");
            for field in self.fields {
                out.push_str(&format!(" {}: {}", field.name(), field.value(event)));
            }
            out.push_str(" )");
        }
        out
    }
}

/// Name and module shown for a record whose function index is out of range
/// (a bug elsewhere, but output should not panic over it); ipftrace2 showed
/// the same for symbols it couldn't resolve.
const UNKNOWN: &str = "(unknown)";

/// The (module, name) of the target a record points at.
fn names(targets: &[Target], func: u32) -> (&str, &str) {
    match targets.get(func as usize) {
        Some(t) => (&t.module, &t.name),
        None => (UNKNOWN, UNKNOWN),
    }
}

/// Writes the aggregate table of all packets: a blank line, the header, then
/// per packet a `===` line and one row per event.
///
/// `graph` selects the function_graph layout: the last column becomes
/// `%-64.64s` holding two spaces per call depth and `name() {` on entry or `}`
/// on return. Its header uses `%-64.64s` too, so that "Function" sits over the
/// left-aligned call tree (ipftrace2 kept the right-aligned `%32.32s` header
/// in this mode; rows are unchanged, only that header word moves). `groups` come from
/// [`crate::group::Packets::into_groups`] (each sorted by timestamp).
///
/// Rows are formatted on every core, a chunk of groups at a time, and
/// written in order as soon as each chunk is ready: a burst's table is tens
/// of MB, and the first rows reach `out` while the rest are formatted.
/// Written in large pieces, so an unbuffered `out` is fine.
pub fn aggregate<G: GroupList + ?Sized>(
    out: &mut dyn Write,
    groups: &G,
    targets: &[Target],
    graph: bool,
    extras: &Extras,
) -> io::Result<()> {
    out.write_all(aggregate_header(graph).as_bytes())?;
    let columns = Columns::new(targets);
    let first_seen = first_timestamps(groups, extras);
    let render = |chunk: &Range<usize>, buf: &mut Vec<u8>| -> io::Result<()> {
        // One buffer for the function_graph column, reused for every row.
        let mut call = String::new();
        let mut group = Vec::new();
        for i in chunk.clone() {
            groups.group(i, &mut group);
            let group = group.as_slice();
            buf.write_all(b"===\n")?;
            summary_line(buf, group[0].packet, extras, &first_seen)?;
            if graph {
                for (r, depth) in group.iter().zip(depths(group)) {
                    graph_row(buf, r, targets, depth, &mut call)?;
                    end_row(buf, r, extras)?;
                }
            } else {
                for r in group {
                    columns.row(buf, r)?;
                    end_row(buf, r, extras)?;
                }
            }
        }
        Ok(())
    };
    let chunks = chunks(groups);
    in_order(&chunks, &render, &mut |bytes| out.write_all(bytes))?;
    out.flush()
}

/// Rows in the first chunk: few, so that output starts at once.
const FIRST_CHUNK_ROWS: usize = 1024;
/// Rows in each later chunk (about 700 KB of table).
const CHUNK_ROWS: usize = 8192;

/// `groups` cut into runs of whole groups of about [`CHUNK_ROWS`] rows.
fn chunks<G: GroupList + ?Sized>(groups: &G) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut rows, mut limit) = (0, 0, FIRST_CHUNK_ROWS);
    for i in 0..groups.len() {
        rows += groups.rows(i);
        if rows >= limit {
            out.push(start..i + 1);
            (start, rows, limit) = (i + 1, 0, CHUNK_ROWS);
        }
    }
    if start < groups.len() {
        out.push(start..groups.len());
    }
    out
}

/// Renders every chunk into a buffer, on as many threads as there are
/// cores, and hands the buffers to `write` in chunk order.
fn in_order<C: Sync>(
    chunks: &[C],
    render: &(dyn Fn(&C, &mut Vec<u8>) -> io::Result<()> + Sync),
    write: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel::<(usize, io::Result<Vec<u8>>)>();
        for _ in 0..threads.min(chunks.len()) {
            let done = done.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else { break };
                let mut buf = Vec::with_capacity(1 << 20);
                let rendered = render(chunk, &mut buf).map(|()| buf);
                // The writer gave up (an error): stop too.
                if done.send((i, rendered)).is_err() {
                    break;
                }
            });
        }
        drop(done);
        let mut ready = BTreeMap::new();
        let mut wanted = 0;
        for (i, rendered) in finished {
            ready.insert(i, rendered);
            while let Some(rendered) = ready.remove(&wanted) {
                write(&rendered?)?;
                wanted += 1;
            }
        }
        Ok(())
    })
}

/// When each packet that has clones was first seen: a clone's summary line
/// names its parent by that timestamp, which the table shows.
fn first_timestamps<G: GroupList + ?Sized>(groups: &G, extras: &Extras) -> HashMap<u32, u64> {
    let Some(details) = extras.details.filter(|d| !d.parents.is_empty()) else {
        return HashMap::new();
    };
    let parents: std::collections::HashSet<u32> = details.parents.values().copied().collect();
    let mut group = Vec::new();
    (0..groups.len())
        .filter_map(|i| {
            groups.group(i, &mut group);
            let first = group[0];
            parents
                .contains(&first.packet)
                .then_some((first.packet, first.tstamp))
        })
        .collect()
}

/// The line under `===`: what the packet is, and what it was cloned from.
fn summary_line(
    out: &mut dyn Write,
    packet: u32,
    extras: &Extras,
    first_seen: &HashMap<u32, u64>,
) -> io::Result<()> {
    let Some(details) = extras.details else {
        return Ok(());
    };
    let summary = details.summaries.get(&packet).map(String::as_str);
    let parent = details
        .parents
        .get(&packet)
        .map(|p| match first_seen.get(p) {
            Some(ts) => format!("(clone of the packet first seen at {ts})"),
            None => "(clone of a packet not traced)".to_string(),
        });
    match (summary, parent) {
        (Some(s), Some(p)) => writeln!(out, "{s} {p}"),
        (Some(s), None) => writeln!(out, "{s}"),
        (None, Some(p)) => writeln!(out, "{p}"),
        (None, None) => Ok(()),
    }
}

/// Ends a row: its drop reason and fields, if any, then the newline.
fn end_row(out: &mut dyn Write, r: &Record, extras: &Extras) -> io::Result<()> {
    if r.drop_reason == NONE && extras.fields.is_empty() {
        return out.write_all(b"\n");
    }
    writeln!(out, "{}", extras.suffix(r))
}

/// The blank line and header line before the table.
fn aggregate_header(graph: bool) -> String {
    if graph {
        format!(
            "\n{:<20} {:>3.3} {:>24.24} {:<64.64}\n",
            "Timestamp", "CPU", "Module", "Function"
        )
    } else {
        format!(
            "\n{:<20} {:>3.3} {:>24.24} {:>32.32}\n",
            "Timestamp", "CPU", "Module", "Function"
        )
    }
}

/// The function tracer's rows, `%-20zu %03u %24.24s %32.32s`, with the
/// last two columns formatted once per function rather than once per row.
struct Columns {
    /// Per target: ` %24.24s %32.32s` of its module and name.
    functions: Vec<String>,
    unknown: String,
}

impl Columns {
    fn new(targets: &[Target]) -> Self {
        let cols = |module: &str, name: &str| format!(" {module:>24.24} {name:>32.32}");
        Columns {
            functions: targets.iter().map(|t| cols(&t.module, &t.name)).collect(),
            unknown: cols(UNKNOWN, UNKNOWN),
        }
    }

    fn row(&self, out: &mut dyn Write, r: &Record) -> io::Result<()> {
        let functions = self.functions.get(r.func as usize).unwrap_or(&self.unknown);
        let mut line = [0u8; 64];
        let len = time_and_cpu(&mut line, r.tstamp, u32::from(r.cpu));
        out.write_all(&line[..len])?;
        out.write_all(functions.as_bytes())
    }
}

/// `%-20zu %03u` into `line`, returning its length: the two numbers of
/// every row, without the formatting machinery (a burst's table has half a
/// million rows).
fn time_and_cpu(line: &mut [u8; 64], tstamp: u64, cpu: u32) -> usize {
    let mut len = decimal(line, 0, tstamp, 1);
    while len < 20 {
        line[len] = b' ';
        len += 1;
    }
    line[len] = b' ';
    decimal(line, len + 1, u64::from(cpu), 3)
}

/// Writes `n` in decimal at `at`, zero-padded to `width` digits; returns
/// where it ends.
fn decimal(line: &mut [u8; 64], at: usize, mut n: u64, width: usize) -> usize {
    let mut digits = [0u8; 20];
    let mut count = 0;
    while n > 0 || count < width {
        digits[count] = b'0' + (n % 10) as u8;
        n /= 10;
        count += 1;
    }
    for (i, d) in digits[..count].iter().rev().enumerate() {
        line[at + i] = *d;
    }
    at + count
}

/// A function_graph row: `%-20zu %03u %24.24s %-64.64s`, the last column
/// built in `call`.
fn graph_row(
    out: &mut dyn Write,
    r: &Record,
    targets: &[Target],
    depth: usize,
    call: &mut String,
) -> io::Result<()> {
    let (module, name) = names(targets, r.func);
    call.clear();
    // Only the first 64 chars show; cap the indent so a runaway depth
    // (unbalanced entries) can't make this buffer grow without bound.
    for _ in 0..depth.min(32) {
        call.push_str("  ");
    }
    if r.is_return {
        call.push('}');
    } else {
        call.push_str(name);
        call.push_str("() {");
    }
    write!(
        out,
        "{:<20} {:03} {:>24.24} {:<64.64}",
        r.tstamp, r.cpu, module, call
    )
}

/// What the packet naming found for a json line.
#[derive(Clone, Copy, Default)]
pub struct JsonSeen<'a> {
    /// The packet's summary, on its first line that knows it.
    pub summary: Option<&'a str>,
    /// For a clone: the packet it was made from.
    pub parent: Option<u32>,
}

/// Writes one event as a JSON line, keys in ipftrace2's order:
/// `{"packet_id":"0x…","timestamp":N,"processor_id":N,"module":"…","function":"…","is_return":B}`.
///
/// Written straight to `out`, without building a string per event, in
/// several small writes: give it a buffered writer. Not flushed here:
/// ipftrace2 flushed after every line so that a pipe sees events as they
/// happen; the caller should flush at least after each batch of events.
///
/// After ipftrace2's keys come ipft's: `"packet":N` (unique per run, where
/// `packet_id` is the reusable skb pointer), `"drop_reason":"NAME"` when the
/// kernel gave one, `"parent_packet":N` on a clone's first line (`--track`),
/// `"summary":"UDP …"` on the packet's first line that
/// knows it, and one `"field":"value"` per `--field` (strings, as
/// ipftrace2's extension data).
pub fn json_event(
    out: &mut dyn Write,
    r: &Record,
    targets: &[Target],
    extras: &Extras,
    seen: JsonSeen,
    snapshot: Option<&Event>,
) -> io::Result<()> {
    let (module, name) = names(targets, r.func);
    write!(
        out,
        r#"{{"packet_id":"{:#x}","timestamp":{},"processor_id":{},"module":"#,
        r.skb, r.tstamp, r.cpu
    )?;
    json_str(out, module)?;
    out.write_all(br#","function":"#)?;
    json_str(out, name)?;
    write!(out, r#","is_return":{},"packet":{}"#, r.is_return, r.packet)?;
    if let Some(reason) = extras.reason(r) {
        out.write_all(br#","drop_reason":"#)?;
        json_str(out, &reason)?;
    }
    if let Some(parent) = seen.parent {
        write!(out, r#","parent_packet":{parent}"#)?;
    }
    if let Some(summary) = seen.summary {
        out.write_all(br#","summary":"#)?;
        json_str(out, summary)?;
    }
    if let Some(event) = snapshot {
        for field in extras.fields {
            write!(out, r#","{}":"#, field.name())?;
            json_str(out, &field.value(event))?;
        }
    }
    out.write_all(b"}\n")
}

/// Writes `s` as a quoted, escaped JSON string.
fn json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::from)
}

/// The header line of the `-l` list, without its newline, to be printed on
/// stderr (as ipftrace2 did) so that stdout holds only rows. Aligned with
/// [`list`]'s rows.
pub fn list_header() -> String {
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
pub fn list(out: &mut dyn Write, targets: &[Target], json: bool) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    //! Golden outputs. The files under `tests/golden/` were printed by a C
    //! program using ipftrace2's printf formats on the same data, so they
    //! check the layout against C's printf, not against this code.
    use super::*;
    use crate::discover::TargetKind;
    use crate::group::{Groups, Packets};

    fn target(name: &str, module: &str, addr: u64, skb_pos: u8) -> Target {
        Target {
            name: name.into(),
            module: module.into(),
            addr,
            skb_pos,
            reason_pos: None,
            nargs: skb_pos + 1,
            kind: TargetKind::Function,
            btf_id: 0,
        }
    }

    fn targets() -> Vec<Target> {
        let mut tracepoint = target("netif_receive_skb", "vmlinux", 0, 0);
        tracepoint.kind = TargetKind::Tracepoint;
        vec![
            target("ip_rcv", "vmlinux", 0xffffffff81c3a2b0, 0),
            target(
                "__netif_receive_skb_one_core",
                "vmlinux",
                0xffffffff81b0e130,
                0,
            ),
            target(
                "a_function_name_that_is_longer_than_32_chars",
                "module_name_longer_than_24_chars",
                0xffffffffc0a01234,
                3,
            ),
            tracepoint,
            target("veth_xmit", "veth", 0xffffffffc0b1c020, 0),
            target("kfree_skbmem", "vmlinux", 0xffffffff81a00010, 0),
            target(
                "a_function_name_that_is_longer_than_32_chars_and_even_longer_than_64",
                "vmlinux",
                0xffffffff81000040,
                11,
            ),
        ]
    }

    fn rec(skb: u64, tstamp: u64, func: u32, cpu: u16, is_return: bool) -> Record {
        Record {
            skb,
            tstamp,
            func,
            packet: skb as u32,
            drop_reason: NONE,
            fields: NONE,
            next: NONE,
            cpu,
            is_return,
        }
    }

    /// Groups `records` (given in arrival order) as the aggregate output does.
    fn groups(records: &[Record]) -> Groups {
        let mut packets = Packets::new();
        for r in records {
            packets.push(*r);
        }
        packets.into_groups().0
    }

    fn render(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const A: u64 = 0xffff8dee8aea9700;
    const B: u64 = 0xffff8dee8aea1000;
    const C: u64 = 0xffff8dee00000100;

    #[test]
    fn row_numbers_match_printf() {
        let mut random = crate::random::Random::new(7);
        let mut cases = vec![
            (0, 0),
            (1, 7),
            (u64::MAX, u32::MAX),
            (12345678901234567890, 999),
        ];
        cases.extend((0..1000).map(|_| {
            (
                random.next() >> (random.next() % 64),
                random.next() as u32 >> (random.next() % 32),
            )
        }));
        for (tstamp, cpu) in cases {
            let mut line = [0u8; 64];
            let len = time_and_cpu(&mut line, tstamp, cpu);
            assert_eq!(&line[..len], format!("{tstamp:<20} {cpu:03}").as_bytes());
        }
    }

    #[test]
    fn aggregate_function() {
        // Three packets arriving interleaved and out of order. B starts first,
        // then A, then C; B has two events with the same timestamp (arrival
        // order kept); C has a 20-digit timestamp and a 4-digit CPU (wider
        // than %03u, as in C). Target 2 has a module and a name longer than
        // their columns.
        let records = [
            rec(A, 25340022557487, 0, 0, false),
            rec(B, 25340022550100, 3, 12, false),
            rec(C, u64::MAX, 5, 1234, false),
            rec(A, 25340022557999, 5, 0, false),
            rec(B, 25340022550000, 2, 12, false),
            rec(A, 25340022557400, 1, 0, false),
            rec(B, 25340022550100, 4, 7, false),
            rec(C, 99999999999999999, 0, 1, false),
        ];
        let text = render(|out| {
            aggregate(
                out,
                &groups(&records),
                &targets(),
                false,
                &Extras::default(),
            )
        });
        assert_eq!(text, include_str!("../tests/golden/aggregate.txt"));
    }

    #[test]
    fn aggregate_function_graph() {
        // Packet D: a return without its entry first (depth stays 0), nested
        // calls, a name too long for the 64-column field, and an entry left
        // open at the end. Packet E: depth starts again at 0, and a surplus
        // return floors at 0.
        const D: u64 = 0xffff8dee8aea2000;
        const E: u64 = 0xffff8dee8aea3000;
        let records = [
            rec(E, 3, 4, 1, false),
            rec(D, 6, 2, 3, false),
            rec(D, 1, 5, 3, true),
            rec(D, 2, 1, 3, false),
            rec(E, 5, 0, 1, true),
            rec(D, 3, 0, 3, false),
            rec(D, 4, 6, 3, false),
            rec(D, 5, 6, 3, true),
            rec(E, 4, 4, 1, true),
            rec(D, 7, 2, 3, true),
            rec(D, 8, 0, 3, true),
            rec(D, 9, 1, 3, true),
            rec(D, 10, 3, 3, false),
        ];
        let text =
            render(|out| aggregate(out, &groups(&records), &targets(), true, &Extras::default()));
        assert_eq!(text, include_str!("../tests/golden/aggregate_graph.txt"));
    }

    #[test]
    fn aggregate_deep_graph_is_all_indent() {
        // 40 nested entries: from depth 32 on, the 64 columns are all indent.
        let records: Vec<Record> = (0..40).map(|t| rec(A, t, 0, 0, false)).collect();
        let text =
            render(|out| aggregate(out, &[records][..], &targets(), true, &Extras::default()));
        let last = text.lines().last().unwrap();
        assert_eq!(last, format!("39{:18} 000 {:>24} {:64}", "", "vmlinux", ""));
    }

    #[test]
    fn aggregate_of_many_chunks_keeps_group_order() {
        // 6,000 packets of 3 rows: the first chunk and a dozen more, formatted
        // on several threads, must come out as if formatted one by one.
        let groups: Vec<Vec<Record>> = (0..6000u64)
            .map(|p| {
                (0..3)
                    .map(|i| rec(p + 1, p * 10 + i, (p % 3) as u32, 1, false))
                    .collect()
            })
            .collect();
        assert!(chunks(groups.as_slice()).len() > 2);
        let whole = render(|out| {
            aggregate(
                out,
                groups.as_slice(),
                &targets(),
                false,
                &Extras::default(),
            )
        });
        let header = render(|out| {
            aggregate::<[Vec<Record>]>(out, &[], &targets(), false, &Extras::default())
        });
        let mut one_by_one = header.clone();
        for group in &groups {
            let alone = render(|out| {
                aggregate(
                    out,
                    std::slice::from_ref(group),
                    &targets(),
                    false,
                    &Extras::default(),
                )
            });
            one_by_one += &alone[header.len()..];
        }
        assert_eq!(whole, one_by_one);
    }

    #[test]
    fn chunks_hold_whole_groups() {
        let groups: Vec<Vec<Record>> = (0..100u64)
            .map(|p| vec![rec(p + 1, p, 0, 0, false); 100])
            .collect();
        let chunks = chunks(groups.as_slice());
        // A small first chunk, so that output starts at once.
        assert_eq!(chunks[0].len(), FIRST_CHUNK_ROWS.div_ceil(100));
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 100);
    }

    #[test]
    fn aggregate_empty() {
        let text = render(|out| {
            aggregate::<[Vec<Record>]>(out, &[], &targets(), false, &Extras::default())
        });
        assert_eq!(
            text,
            "\nTimestamp            CPU                   Module                         Function\n"
        );
    }

    #[test]
    fn aggregate_counts_chars() {
        // C would cut these mid-character and pad by bytes; here cuts fall
        // between chars and padding counts chars, so columns stay aligned.
        // Row 1: 26 chars (29 bytes) for 24 columns, 35 chars (38 bytes) for
        // 32. Row 2: 6 chars (7 bytes), padded with 18 spaces.
        let targets = [
            target(
                "fünction_ñame_with_ümlauts_and_more",
                "mödule_ñame_ümlauts_123456",
                0,
                0,
            ),
            target("ümlaut", "ümlaut", 0, 0),
        ];
        let records = vec![rec(A, 1, 0, 0, false), rec(A, 2, 1, 0, false)];
        let text =
            render(|out| aggregate(out, &[records][..], &targets, false, &Extras::default()));
        let rows: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(
            rows,
            [
                "1                    000 mödule_ñame_ümlauts_1234 fünction_ñame_with_ümlauts_and_m",
                "2                    000                   ümlaut                           ümlaut",
            ]
        );
    }

    #[test]
    fn json_lines() {
        let targets = targets();
        let text = render(|out| {
            let none = Extras::default();
            json_event(
                out,
                &rec(A, 25340022557487, 0, 0, false),
                &targets,
                &none,
                JsonSeen::default(),
                None,
            )?;
            json_event(
                out,
                &rec(C, u64::MAX, 2, 1234, true),
                &targets,
                &none,
                JsonSeen::default(),
                None,
            )?;
            // An index past the target list must not panic.
            json_event(
                out,
                &rec(1, 0, 99, 0, false),
                &targets,
                &none,
                JsonSeen::default(),
                None,
            )
        });
        assert_eq!(
            text,
            concat!(
                r#"{"packet_id":"0xffff8dee8aea9700","timestamp":25340022557487,"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false,"packet":2330629888}"#,
                "\n",
                r#"{"packet_id":"0xffff8dee00000100","timestamp":18446744073709551615,"processor_id":1234,"module":"module_name_longer_than_24_chars","function":"a_function_name_that_is_longer_than_32_chars","is_return":true,"packet":256}"#,
                "\n",
                r#"{"packet_id":"0x1","timestamp":0,"processor_id":0,"module":"(unknown)","function":"(unknown)","is_return":false,"packet":1}"#,
                "\n",
            )
        );
    }

    #[test]
    fn json_escapes_strings() {
        let targets = [target("a\"b\\c\nd\te\u{1}é", "m\"od", 0, 0)];
        let text = render(|out| {
            json_event(
                out,
                &rec(A, 1, 0, 2, false),
                &targets,
                &Extras::default(),
                JsonSeen::default(),
                None,
            )
        });
        assert_eq!(
            text,
            concat!(
                r#"{"packet_id":"0xffff8dee8aea9700","timestamp":1,"processor_id":2,"module":"m\"od","function":"a\"b\\c\nd\te\u0001é","is_return":false,"packet":2330629888}"#,
                "\n"
            )
        );
        // And it is valid JSON that reads back to the same strings.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["function"], targets[0].name);
        assert_eq!(v["module"], targets[0].module);
    }

    #[test]
    fn drop_reasons_summaries_and_fields() {
        let mut snapshot = Event::zeroed();
        snapshot.len = 84;
        snapshot.gso_size = 0;
        let mut details = Details::default();
        details.summaries.insert(
            A as u32,
            "ICMP 127.0.0.1 -> 127.0.0.1 type 8 code 0 len 84 dev lo".into(),
        );
        details.snapshots.push(snapshot);
        let reasons = HashMap::from([(6, "NETFILTER_DROP".to_string())]);
        let fields = [Field::Len, Field::GsoSize];
        let extras = Extras {
            reasons: Some(&reasons),
            fields: &fields,
            details: Some(&details),
        };
        let mut dropped = rec(A, 2, 5, 1, false);
        dropped.drop_reason = 6;
        dropped.fields = 0;
        let plain = rec(A, 1, 0, 1, false);
        let text =
            render(|out| aggregate(out, &[vec![plain, dropped]][..], &targets(), false, &extras));
        assert_eq!(
            text.lines().skip(2).collect::<Vec<_>>(),
            [
                "===",
                "ICMP 127.0.0.1 -> 127.0.0.1 type 8 code 0 len 84 dev lo",
                "1                    001                  vmlinux                           ip_rcv",
                "2                    001                  vmlinux                     kfree_skbmem (drop: NETFILTER_DROP) ( len: 84 gso_size: 0 )",
            ]
        );
        let json = render(|out| {
            json_event(
                out,
                &dropped,
                &targets(),
                &extras,
                JsonSeen {
                    summary: Some("ICMP x"),
                    parent: Some(1),
                },
                Some(&snapshot),
            )
        });
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["drop_reason"], "NETFILTER_DROP");
        assert_eq!(v["summary"], "ICMP x");
        assert_eq!(v["len"], "84");
        assert_eq!(v["packet"], A as u32);
        assert_eq!(v["parent_packet"], 1);
        assert_eq!(v["parent_packet"], 1);
    }

    #[test]
    fn list_table() {
        let text = render(|out| {
            writeln!(out, "{}", list_header())?;
            list(out, &targets(), false)
        });
        assert_eq!(text, include_str!("../tests/golden/list.txt"));
    }

    #[test]
    fn list_json() {
        let mut targets = targets();
        targets.truncate(4);
        targets[1].name = "quo\"te".into();
        let text = render(|out| list(out, &targets, true));
        assert_eq!(
            text,
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
