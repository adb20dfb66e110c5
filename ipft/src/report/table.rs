//! The aggregate table: per packet a `===` line, its summary, and one row
//! per event (ipftrace2's layout), or the function_graph call tree.
use std::{
    collections::HashMap,
    io::{self, Write},
    ops::Range,
};

use super::{names, return_value, Extras, UNKNOWN};
use crate::{
    discover::Target,
    par,
    trace::group::{GroupList, Record, NONE},
};

/// Writes the aggregate table of all packets: a blank line, the header, then
/// per packet a `===` line and one row per event.
///
/// `graph` selects the function_graph layout: the last column becomes
/// `%-64.64s` holding two spaces per call depth and `name() {` on entry or `}`
/// on return, followed by ` = value` when the function returns one (ipft's
/// addition: `} = -22 EINVAL`). Its header uses `%-64.64s` too, so that "Function" sits over the
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
            fate_line(buf, group[0].packet, extras)?;
        }
        Ok(())
    };
    // Formatted on every core; written in order as each chunk is ready.
    let work = |chunk: Range<usize>| {
        let mut buf = Vec::with_capacity(1 << 20);
        render(&chunk, &mut buf).map(|()| buf)
    };
    let mut written = Ok(());
    par::ordered(chunks(groups), par::cpus(), &work, &mut |rendered| {
        written = rendered.and_then(|bytes| out.write_all(&bytes));
        written.is_ok()
    });
    written?;
    out.flush()
}

/// Rows in the first chunk: few, so that output starts at once.
pub(super) const FIRST_CHUNK_ROWS: usize = 1024;
/// Rows in each later chunk (about 700 KB of table).
const CHUNK_ROWS: usize = 8192;

/// `groups` cut into runs of whole groups of about [`CHUNK_ROWS`] rows.
pub(super) fn chunks<G: GroupList + ?Sized>(groups: &G) -> Vec<Range<usize>> {
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

/// Ends a row: its drop reason, caller and fields, if any, then the
/// newline; then its stack, a frame a line, indented.
fn end_row(out: &mut dyn Write, r: &Record, extras: &Extras) -> io::Result<()> {
    let located = extras.located(r);
    if r.drop_reason == NONE && extras.fields.is_empty() && located.is_none() {
        return out.write_all(b"\n");
    }
    writeln!(out, "{}", extras.suffix(r))?;
    for frame in located.map_or(&[][..], |l| &l.stack) {
        writeln!(out, "    {frame}")?;
    }
    Ok(())
}

/// The line ending a packet's group: how it ended.
fn fate_line(out: &mut dyn Write, packet: u32, extras: &Extras) -> io::Result<()> {
    match extras.fates.and_then(|f| f.get(&packet)) {
        Some(fate) => writeln!(out, "fate: {fate}"),
        None => Ok(()),
    }
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
pub(super) fn time_and_cpu(line: &mut [u8; 64], tstamp: u64, cpu: u32) -> usize {
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
        if let Some(value) = return_value(targets, r) {
            use std::fmt::Write as _;
            let _ = write!(call, " = {value}");
        }
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

/// Call depth of each row of a timestamp-sorted function_graph group.
///
/// An entry prints at the current depth, then goes one deeper; a return goes
/// one up first, then prints. The depth never drops below 0: a return without
/// its entry (tracing started mid-call, or a lost event) prints at depth 0.
pub(super) fn depths(group: &[Record]) -> impl Iterator<Item = usize> + '_ {
    let mut depth = 0usize;
    group.iter().map(move |r| {
        if r.is_return {
            depth = depth.saturating_sub(1);
            depth
        } else {
            let printed = depth;
            depth += 1;
            printed
        }
    })
}
