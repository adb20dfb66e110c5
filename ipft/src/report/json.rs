//! JSON lines: one object per event, streamed as events arrive.
use std::io::{self, Write};

use ipft_common::Event;

use super::{fields, names, return_value, retval::Value, Extras};
use crate::{
    discover::Target,
    trace::group::{Located, Record},
};

/// What the packet naming found for a json line.
#[derive(Clone, Copy, Default)]
pub struct JsonSeen<'a> {
    /// The packet's summary, on its first line that knows it.
    pub summary: Option<&'a str>,
    /// For a clone: the packet it was made from.
    pub parent: Option<u32>,
    /// A dropping row's caller, a row's stack.
    pub located: Option<&'a Located>,
    /// On the packet's last line (its free): how it ended.
    pub fate: Option<&'a serde_json::Value>,
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
/// knows it, `"caller":"nf_hook_slow+0x8f"` on a row that drops the packet,
/// `"stack":["kfree_skb_reason+0x9", …]` with `--stack`; on a
/// function_graph return of a function that returns a value,
/// `"retval":-22` (a number; a pointer is a `"0x…"` string unless it is an
/// `ERR_PTR`) and, for a negative errno, `"errno":"EINVAL"`; `"fate":{…}` on
/// the row that frees the packet, and one `"field":"value"` per `--field`
/// (strings, as ipftrace2's extension data).
pub fn event(
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
    if let Some(caller) = seen.located.and_then(|l| l.caller.as_deref()) {
        out.write_all(br#","caller":"#)?;
        json_str(out, caller)?;
    }
    if let Some(located) = seen.located.filter(|l| !l.stack.is_empty()) {
        out.write_all(br#","stack":"#)?;
        serde_json::to_writer(&mut *out, &located.stack).map_err(io::Error::from)?;
    }
    if let Some(value) = return_value(targets, r) {
        match value {
            Value::Signed(n) => write!(out, r#","retval":{n}"#)?,
            Value::Unsigned(n) => write!(out, r#","retval":{n}"#)?,
            Value::Pointer(p) => write!(out, r#","retval":"{p:#x}""#)?,
        }
        if let Some(name) = value.errno() {
            write!(out, r#","errno":"{name}""#)?;
        }
    }
    if let Some(fate) = seen.fate {
        out.write_all(br#","fate":"#)?;
        serde_json::to_writer(&mut *out, fate).map_err(io::Error::from)?;
    }
    if let Some(event) = snapshot {
        for field in extras.fields {
            write!(out, r#","{}":"#, field.name())?;
            json_str(out, &fields::value(*field, event))?;
        }
    }
    out.write_all(b"}\n")
}

/// Writes `s` as a quoted, escaped JSON string.
pub(super) fn json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::from)
}
