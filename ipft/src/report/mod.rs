//! Report: what the user reads. The aggregate table ([`table`]), JSON lines
//! ([`json`]), the `-l` list ([`list`]), the progress lines on stderr
//! ([`progress`]), and where output goes ([`sink`]). [`collect`] takes each
//! event from the trace stage and streams or stores it; with `-w` it also
//! hands each row's bytes to [`capture`], which writes pcapng frames
//! ([`frames`] picks them, `ipft_output::pcapng` writes them).
//!
//! The pure formats live in the ipft-output crate (the table's layout, JSON
//! lines, pcapng, fate words, fields, return values, the `-l` list, and the
//! parser the tests use); the modules here
//! convert the trace stage's data to its inputs, and keep what needs the
//! run: the kernel's symbols and stacks ([`sites`]), the output files
//! ([`sink`]), the options (`cli::Field`), the parallel table.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte (see
//! `ipft_output::table`).
pub mod capture;
pub mod collect;
pub mod fate;
pub mod fields;
pub mod frames;
pub mod json;
pub mod list;
pub mod progress;
pub mod sink;
pub mod sites;
pub mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use ipft_common::Event;
use ipft_output::{retval, table::UNKNOWN, Reason};

use crate::{
    cli::Field,
    discover::Target,
    trace::group::{Details, Located, Record, NONE},
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
    /// Each packet's fate, worded (known once tracing stopped).
    pub fates: Option<&'a HashMap<u32, String>>,
}

impl Extras<'_> {
    /// Why the row dropped its packet, if it did.
    fn reason(&self, r: &Record) -> Option<Reason<'_>> {
        if r.drop_reason == NONE {
            return None;
        }
        let name = self.reasons.and_then(|names| names.get(&r.drop_reason));
        // Not drops: a packet freed after use passes these.
        if name.is_some_and(|n| n == "CONSUMED" || n == "NOT_DROPPED_YET") {
            return None;
        }
        Some(match name {
            Some(name) => Reason::Name(name),
            None => Reason::Number(r.drop_reason),
        })
    }

    fn snapshot(&self, r: &Record) -> Option<&Event> {
        self.details?.snapshots.get(r.fields as usize)
    }

    /// Where the row was called from, when known.
    fn located(&self, r: &Record) -> Option<&Located> {
        self.details?.located.get(&r.fields)
    }
}

/// A return row's value, as its function's type reads it (`None` for
/// entries and `void` functions).
fn return_value(targets: &[Target], r: &Record) -> Option<retval::Value> {
    let returns = targets.get(r.func as usize)?.returns;
    r.is_return
        .then(|| retval::value(returns, r.retval))
        .flatten()
}

/// The (module, name) of the target a record points at.
fn names(targets: &[Target], func: u32) -> (&str, &str) {
    match targets.get(func as usize) {
        Some(t) => (&t.module, &t.name),
        None => (UNKNOWN, UNKNOWN),
    }
}
