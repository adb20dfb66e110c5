//! Report: what the user reads. The aggregate table ([`table`]), JSON lines
//! ([`json`]), the `-l` list ([`list`]), the progress lines on stderr
//! ([`progress`]), and where output goes ([`sink`]). [`collect`] takes each
//! event from the trace stage and streams or stores it; with `-w` it also
//! hands each row's bytes to [`capture`], which writes pcapng frames
//! ([`frames`] picks them, `ipft_output::pcapng` writes them).
//!
//! The pure formats live in the ipft-output crate (JSON lines, pcapng, fate
//! words, return values, and the parser the tests use); the modules here
//! convert the trace stage's data to its inputs, and keep what needs the
//! run: the kernel's symbols and stacks ([`sites`]), the output files
//! ([`sink`]), the options (`cli::Field`), the parallel table.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte, because users'
//! scripts parse them (columns split on whitespace, fixed widths); the
//! formatting is written with `format!` specs that match C's: `%-20s` is
//! `{:<20}`, `%24.24s` is `{:>24.24}`, `%03u` is `{:03}`. Rust's precision
//! cuts on `char`s, so a non-ASCII name can't be split mid-character (C
//! would cut bytes); kernel symbols are ASCII, where the two agree.
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

use std::{borrow::Cow, collections::HashMap};

use ipft_common::Event;
use ipft_output::retval;

use crate::{
    cli::Field,
    discover::{Returns, Target},
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
    fn reason(&self, r: &Record) -> Option<Cow<'_, str>> {
        if r.drop_reason == NONE {
            return None;
        }
        let name = self.reasons.and_then(|names| names.get(&r.drop_reason));
        // Not drops: a packet freed after use passes these.
        if name.is_some_and(|n| n == "CONSUMED" || n == "NOT_DROPPED_YET") {
            return None;
        }
        Some(match name {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(r.drop_reason.to_string()),
        })
    }

    fn snapshot(&self, r: &Record) -> Option<&Event> {
        self.details?.snapshots.get(r.fields as usize)
    }

    /// Where the row was called from, when known.
    fn located(&self, r: &Record) -> Option<&Located> {
        self.details?.located.get(&r.fields)
    }

    /// ` (drop: REASON) (caller: nf_hook_slow+0x8f) ( len: 84 gso_size: 0 )`
    /// after a row; empty when none applies.
    fn suffix(&self, r: &Record) -> String {
        let mut out = String::new();
        if let Some(reason) = self.reason(r) {
            out.push_str(&format!(" (drop: {reason})"));
        }
        if let Some(caller) = self.located(r).and_then(|l| l.caller.as_deref()) {
            out.push_str(&format!(" (caller: {caller})"));
        }
        if let (false, Some(event)) = (self.fields.is_empty(), self.snapshot(r)) {
            out.push_str(" (");
            for field in self.fields {
                out.push_str(&format!(
                    " {}: {}",
                    field.name(),
                    fields::value(*field, event)
                ));
            }
            out.push_str(" )");
        }
        out
    }
}

/// Name and module shown for a record whose function index is out of range
/// (a bug elsewhere, but output should not panic over it); ipftrace2 showed
/// the same for symbols it couldn't resolve.
pub(crate) const UNKNOWN: &str = "(unknown)";

/// A return row's value, as its function's type reads it (`None` for
/// entries and `void` functions).
fn return_value(targets: &[Target], r: &Record) -> Option<retval::Value> {
    let returns = targets.get(r.func as usize)?.returns;
    r.is_return
        .then(|| retval::value(returns_of(returns), r.retval))
        .flatten()
}

/// discover's return type as ipft-output reads it.
fn returns_of(returns: Returns) -> retval::Returns {
    match returns {
        Returns::Nothing => retval::Returns::Nothing,
        Returns::Signed(size) => retval::Returns::Signed(size),
        Returns::Unsigned(size) => retval::Returns::Unsigned(size),
        Returns::Pointer => retval::Returns::Pointer,
    }
}

/// The (module, name) of the target a record points at.
fn names(targets: &[Target], func: u32) -> (&str, &str) {
    match targets.get(func as usize) {
        Some(t) => (&t.module, &t.name),
        None => (UNKNOWN, UNKNOWN),
    }
}
