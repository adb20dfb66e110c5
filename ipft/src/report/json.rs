//! JSON lines: a traced record as `ipft_output::json` writes it. This
//! module only gathers its names (targets, drop reasons, `--field` values
//! read by `cli::Field`), hence stays in ipft.
use std::io::{self, Write};

use ipft_common::Event;
use ipft_output::json::{self, Row, Seen};

use super::{
    fields::{self, Value},
    names, return_value, Extras,
};
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

/// Writes one event as a JSON line (see [`ipft_output::json::event`]);
/// `snapshot` is the event whose `--field` values it shows. Give it a
/// buffered writer; not flushed here.
pub fn event(
    out: &mut dyn Write,
    r: &Record,
    targets: &[Target],
    extras: &Extras,
    seen: JsonSeen,
    snapshot: Option<&Event>,
) -> io::Result<()> {
    let (module, function) = names(targets, r.func);
    let reason = extras.reason(r);
    let row = Row {
        skb: r.skb,
        tstamp: r.tstamp,
        cpu: r.cpu,
        module,
        function,
        is_return: r.is_return,
        packet: r.packet,
        drop_reason: reason,
        retval: return_value(targets, r),
    };
    let located = seen.located;
    let seen = Seen {
        summary: seen.summary,
        parent: seen.parent,
        caller: located.and_then(|l| l.caller.as_deref()),
        stack: located.map_or(&[][..], |l| &l.stack),
        fate: seen.fate,
    };
    let skb = snapshot.map(fields::skb);
    let values = skb.iter().flat_map(|skb| {
        extras.fields.iter().map(move |f| {
            let field = fields::field(*f);
            (field.name(), Value(field, skb).to_string())
        })
    });
    json::event(out, &row, &seen, values)
}
