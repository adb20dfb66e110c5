//! The aggregate table of a run: the trace stage's packet groups as
//! `ipft_output::table` lays them out. What stays here is what needs ipft:
//! the groups (`trace::group::GroupList`), their conversion, and the
//! formatting on every core (`par::ordered`).
use std::{
    collections::HashMap,
    io::{self, Write},
    ops::Range,
};

use ipft_output::table::{Head, Parent, Row, Table};

use super::{fields, return_value, Extras};
use crate::{
    discover::Target,
    par,
    trace::group::{GroupList, Record},
};

/// Writes the aggregate table of all packets: a blank line, the header, then
/// per packet a `===` line and one row per event; `graph` selects the
/// function_graph layout. `groups` come from
/// [`crate::trace::group::Packets::into_groups`] (each sorted by timestamp).
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
    let functions = targets.iter().map(|t| (t.module.as_str(), t.name.as_str()));
    let shown = extras.fields.iter().map(|f| fields::field(*f)).collect();
    let table = Table::new(functions, graph, shown);
    out.write_all(table.header().as_bytes())?;
    let first_seen = first_timestamps(groups, extras);
    let render = |chunk: &Range<usize>, buf: &mut Vec<u8>| -> io::Result<()> {
        // One buffer for the function_graph column, reused for every row.
        let mut scratch = String::new();
        let mut group = Vec::new();
        for i in chunk.clone() {
            groups.group(i, &mut group);
            let head = head(group[0].packet, extras, &first_seen);
            let rows = group.iter().map(|r| row(r, targets, extras));
            table.group(buf, &head, rows, &mut scratch)?;
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

/// What `packet`'s group shows besides its rows: its summary, its parent,
/// its fate.
fn head<'a>(packet: u32, extras: &Extras<'a>, first_seen: &HashMap<u32, u64>) -> Head<'a> {
    let fate = extras
        .fates
        .and_then(|f| f.get(&packet))
        .map(String::as_str);
    let Some(details) = extras.details else {
        return Head {
            fate,
            ..Head::default()
        };
    };
    Head {
        summary: details.summaries.get(&packet).map(String::as_str),
        parent: details
            .parents
            .get(&packet)
            .map(|p| match first_seen.get(p) {
                Some(ts) => Parent::FirstSeen(*ts),
                None => Parent::NotTraced,
            }),
        fate,
    }
}

/// A record as the table shows it.
fn row<'a>(r: &Record, targets: &[Target], extras: &'a Extras) -> Row<'a> {
    let located = extras.located(r);
    let skb = match extras.fields.is_empty() {
        true => None,
        false => extras.snapshot(r).map(fields::skb),
    };
    Row {
        tstamp: r.tstamp,
        cpu: r.cpu,
        func: r.func,
        is_return: r.is_return,
        retval: return_value(targets, r),
        drop_reason: extras.reason(r),
        caller: located.and_then(|l| l.caller.as_deref()),
        stack: located.map_or(&[][..], |l| &l.stack),
        skb,
    }
}
