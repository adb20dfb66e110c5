//! The aggregate table: per packet a `===` line, its summary, and one row
//! per event (ipftrace2's layout), or the function_graph call tree.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte, because users'
//! scripts parse them (columns split on whitespace, fixed widths); the
//! formatting is written with `format!` specs that match C's: `%-20s` is
//! `{:<20}`, `%24.24s` is `{:>24.24}`, `%03u` is `{:03}`. Rust's precision
//! cuts on `char`s, so a non-ASCII name can't be split mid-character (C
//! would cut bytes); kernel symbols are ASCII, where the two agree.
//!
//! [`Table::group`] formats one packet at a time into any writer, so that
//! the caller can format many packets at once on several cores and write
//! them in order.
use std::{
    fmt::Write as _,
    io::{self, Write},
};

use crate::{
    fields::{Field, Skb, Value as FieldValue},
    retval::Value,
    Reason,
};

/// Name and module shown for a row whose function is out of range (a bug
/// elsewhere, but output should not panic over it); ipftrace2 showed the
/// same for symbols it couldn't resolve.
pub const UNKNOWN: &str = "(unknown)";

/// One row of a packet's group.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    /// Kernel monotonic time in nanoseconds.
    pub tstamp: u64,
    pub cpu: u16,
    /// Index into the functions the [`Table`] was made with.
    pub func: u32,
    /// A function_graph return, not an entry.
    pub is_return: bool,
    /// A function_graph return's value, when its function returns one.
    pub retval: Option<Value>,
    /// Why the row drops the packet, when it does.
    pub drop_reason: Option<Reason<'a>>,
    /// Where the row was called from (`nf_hook_slow+0x8f`), when known.
    pub caller: Option<&'a str>,
    /// `--stack`: the row's kernel stack, a frame a line under it.
    pub stack: &'a [String],
    /// The skb's fields at this row, for the table's `--field`s.
    pub skb: Option<Skb<'a>>,
}

/// What a packet's group shows besides its rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Head<'a> {
    /// The line under `===` (`ICMP 127.0.0.1 -> …`).
    pub summary: Option<&'a str>,
    /// For a clone: the packet it was made from.
    pub parent: Option<Parent>,
    /// How the packet ended, worded: the `fate:` line ending its group.
    pub fate: Option<&'a str>,
}

/// The packet a clone was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    /// Traced, and first seen at this timestamp.
    FirstSeen(u64),
    NotTraced,
}

/// The table's layout: its functions, tracer and `--field`s.
pub struct Table {
    graph: bool,
    fields: Vec<Field>,
    /// Per function: its (module, name).
    names: Vec<(String, String)>,
    /// Per function: ` %24.24s %32.32s` of its module and name, formatted
    /// once per function rather than once per row.
    columns: Vec<String>,
    unknown: String,
}

impl Table {
    /// A table of rows of `functions` (module, name), indexed by
    /// [`Row::func`]. `graph` selects the function_graph layout: the last
    /// column becomes `%-64.64s` holding two spaces per call depth and
    /// `name() {` on entry or `}` on return, followed by ` = value` when the
    /// function returns one (ipft's addition: `} = -22 EINVAL`).
    pub fn new<'a>(
        functions: impl IntoIterator<Item = (&'a str, &'a str)>,
        graph: bool,
        fields: Vec<Field>,
    ) -> Table {
        let cols = |module: &str, name: &str| format!(" {module:>24.24} {name:>32.32}");
        let names: Vec<(String, String)> = functions
            .into_iter()
            .map(|(module, name)| (module.to_string(), name.to_string()))
            .collect();
        Table {
            graph,
            fields,
            columns: names.iter().map(|(m, n)| cols(m, n)).collect(),
            names,
            unknown: cols(UNKNOWN, UNKNOWN),
        }
    }

    /// The blank line and header line before the table. The function_graph
    /// header uses `%-64.64s` too, so that "Function" sits over the
    /// left-aligned call tree (ipftrace2 kept the right-aligned `%32.32s`
    /// header in this mode; rows are unchanged, only that header word moves).
    pub fn header(&self) -> String {
        if self.graph {
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

    /// Writes one packet: `===`, its summary line, its rows (sorted by
    /// timestamp), its fate line. `scratch` is reused for the
    /// function_graph column: give the same one to every group.
    pub fn group<'a>(
        &self,
        out: &mut dyn Write,
        head: &Head,
        rows: impl Iterator<Item = Row<'a>>,
        scratch: &mut String,
    ) -> io::Result<()> {
        out.write_all(b"===\n")?;
        summary_line(out, head)?;
        let mut depth = Depth::default();
        for row in rows {
            if self.graph {
                self.graph_row(out, &row, depth.of(row.is_return), scratch)?;
            } else {
                self.row(out, &row)?;
            }
            self.end_row(out, &row)?;
        }
        match head.fate {
            Some(fate) => writeln!(out, "fate: {fate}"),
            None => Ok(()),
        }
    }

    /// The function tracer's row, `%-20zu %03u %24.24s %32.32s`.
    fn row(&self, out: &mut dyn Write, r: &Row) -> io::Result<()> {
        let functions = self.columns.get(r.func as usize).unwrap_or(&self.unknown);
        let mut line = [0u8; 64];
        let len = time_and_cpu(&mut line, r.tstamp, u32::from(r.cpu));
        out.write_all(&line[..len])?;
        out.write_all(functions.as_bytes())
    }

    /// A function_graph row: `%-20zu %03u %24.24s %-64.64s`, the last
    /// column built in `call`.
    fn graph_row(
        &self,
        out: &mut dyn Write,
        r: &Row,
        depth: usize,
        call: &mut String,
    ) -> io::Result<()> {
        let (module, name) = match self.names.get(r.func as usize) {
            Some((module, name)) => (module.as_str(), name.as_str()),
            None => (UNKNOWN, UNKNOWN),
        };
        call.clear();
        // Only the first 64 chars show; cap the indent so a runaway depth
        // (unbalanced entries) can't make this buffer grow without bound.
        for _ in 0..depth.min(32) {
            call.push_str("  ");
        }
        if r.is_return {
            call.push('}');
            if let Some(value) = r.retval {
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

    /// Ends a row: ` (drop: REASON) (caller: nf_hook_slow+0x8f) ( len: 84
    /// gso_size: 0 )` as far as they apply, the newline, then its stack, a
    /// frame a line, indented.
    fn end_row(&self, out: &mut dyn Write, r: &Row) -> io::Result<()> {
        if let Some(reason) = r.drop_reason {
            write!(out, " (drop: {reason})")?;
        }
        if let Some(caller) = r.caller {
            write!(out, " (caller: {caller})")?;
        }
        if let (false, Some(skb)) = (self.fields.is_empty(), &r.skb) {
            out.write_all(b" (")?;
            for &field in &self.fields {
                write!(out, " {}: {}", field.name(), FieldValue(field, skb))?;
            }
            out.write_all(b" )")?;
        }
        out.write_all(b"\n")?;
        for frame in r.stack {
            writeln!(out, "    {frame}")?;
        }
        Ok(())
    }
}

/// The line under `===`: what the packet is, and what it was cloned from.
fn summary_line(out: &mut dyn Write, head: &Head) -> io::Result<()> {
    let parent = head.parent.map(|p| match p {
        Parent::FirstSeen(ts) => format!("(clone of the packet first seen at {ts})"),
        Parent::NotTraced => "(clone of a packet not traced)".to_string(),
    });
    match (head.summary, parent) {
        (Some(s), Some(p)) => writeln!(out, "{s} {p}"),
        (Some(s), None) => writeln!(out, "{s}"),
        (None, Some(p)) => writeln!(out, "{p}"),
        (None, None) => Ok(()),
    }
}

/// Call depth of each row of a timestamp-sorted function_graph group.
///
/// An entry prints at the current depth, then goes one deeper; a return goes
/// one up first, then prints. The depth never drops below 0: a return without
/// its entry (tracing started mid-call, or a lost event) prints at depth 0.
#[derive(Default)]
struct Depth(usize);

impl Depth {
    /// The depth the next row prints at.
    fn of(&mut self, is_return: bool) -> usize {
        if is_return {
            self.0 = self.0.saturating_sub(1);
            self.0
        } else {
            self.0 += 1;
            self.0 - 1
        }
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

#[cfg(test)]
mod tests;
