//! JSON lines: one object per event, streamed as events arrive.
use std::io::{self, Write};

use crate::{retval::Value, Reason};

/// One event, as its JSON line shows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    /// The `struct sk_buff *` pointer (`packet_id`), which the kernel reuses.
    pub skb: u64,
    /// Kernel monotonic time in nanoseconds.
    pub tstamp: u64,
    pub cpu: u16,
    pub module: &'a str,
    pub function: &'a str,
    /// A function_graph return, not an entry.
    pub is_return: bool,
    /// ipft's packet number, unique per run.
    pub packet: u32,
    /// Why the row drops the packet, when the kernel said.
    pub drop_reason: Option<Reason<'a>>,
    /// A function_graph return's value, when its function returns one.
    pub retval: Option<Value>,
}

/// What the packet naming found for a json line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    /// The packet's summary, on its first line that knows it.
    pub summary: Option<&'a str>,
    /// For a clone: the packet it was made from.
    pub parent: Option<u32>,
    /// A dropping row's caller (`nf_hook_slow+0x8f`).
    pub caller: Option<&'a str>,
    /// `--stack`: the row's stack, a frame an entry (empty: none).
    pub stack: &'a [String],
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
/// the row that frees the packet, and one `"field":"value"` per `fields`
/// (`--field`: strings, as ipftrace2's extension data).
pub fn event<'a, V: AsRef<str>>(
    out: &mut dyn Write,
    row: &Row,
    seen: &Seen,
    fields: impl Iterator<Item = (&'a str, V)>,
) -> io::Result<()> {
    write!(
        out,
        r#"{{"packet_id":"{:#x}","timestamp":{},"processor_id":{},"module":"#,
        row.skb, row.tstamp, row.cpu
    )?;
    json_str(out, row.module)?;
    out.write_all(br#","function":"#)?;
    json_str(out, row.function)?;
    write!(
        out,
        r#","is_return":{},"packet":{}"#,
        row.is_return, row.packet
    )?;
    match row.drop_reason {
        Some(Reason::Name(name)) => {
            out.write_all(br#","drop_reason":"#)?;
            json_str(out, name)?;
        }
        Some(Reason::Number(n)) => write!(out, r#","drop_reason":"{n}""#)?,
        None => {}
    }
    if let Some(parent) = seen.parent {
        write!(out, r#","parent_packet":{parent}"#)?;
    }
    if let Some(summary) = seen.summary {
        out.write_all(br#","summary":"#)?;
        json_str(out, summary)?;
    }
    if let Some(caller) = seen.caller {
        out.write_all(br#","caller":"#)?;
        json_str(out, caller)?;
    }
    if !seen.stack.is_empty() {
        out.write_all(br#","stack":"#)?;
        serde_json::to_writer(&mut *out, seen.stack).map_err(io::Error::from)?;
    }
    if let Some(value) = row.retval {
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
    for (name, value) in fields {
        write!(out, r#","{name}":"#)?;
        json_str(out, value.as_ref())?;
    }
    out.write_all(b"}\n")
}

/// Writes `s` as a quoted, escaped JSON string.
pub fn json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retval::{value, Returns};

    fn line(row: &Row, seen: &Seen, fields: &[(&str, &str)]) -> String {
        let mut out = Vec::new();
        event(&mut out, row, seen, fields.iter().copied()).unwrap();
        String::from_utf8(out).unwrap()
    }

    const ROW: Row = Row {
        skb: 0xffff8dee8aea9700,
        tstamp: 25340022557487,
        cpu: 0,
        module: "vmlinux",
        function: "ip_rcv",
        is_return: false,
        packet: 2330629888,
        drop_reason: None,
        retval: None,
    };

    #[test]
    fn ipftrace2s_keys_first() {
        assert_eq!(
            line(&ROW, &Seen::default(), &[]),
            concat!(
                r#"{"packet_id":"0xffff8dee8aea9700","timestamp":25340022557487,"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false,"packet":2330629888}"#,
                "\n"
            )
        );
    }

    #[test]
    fn strings_are_escaped() {
        let row = Row {
            module: "m\"od",
            function: "a\"b\\c\nd\te\u{1}é",
            ..ROW
        };
        let text = line(&row, &Seen::default(), &[]);
        assert!(text.contains(r#""module":"m\"od","function":"a\"b\\c\nd\te\u0001é""#));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["function"], row.function);
    }

    #[test]
    fn every_addition_in_its_place() {
        let fate = serde_json::json!({"kind": "dropped", "reason": "NETFILTER_DROP"});
        let stack = ["kfree_skb_reason+0x9".to_string()];
        let row = Row {
            is_return: true,
            drop_reason: Some(Reason::Name("NETFILTER_DROP")),
            retval: value(Returns::Signed(4), 0xffff_ffea),
            ..ROW
        };
        let seen = Seen {
            summary: Some("ICMP x"),
            parent: Some(1),
            caller: Some("nf_hook_slow+0x8f"),
            stack: &stack,
            fate: Some(&fate),
        };
        let text = line(&row, &seen, &[("len", "84"), ("mark", "0x55")]);
        let unnamed = Row {
            drop_reason: Some(Reason::Number(99)),
            ..ROW
        };
        assert!(line(&unnamed, &Seen::default(), &[]).contains(r#","drop_reason":"99"}"#));
        let tail = &text[text.find(r#""packet":"#).unwrap()..];
        assert_eq!(
            tail,
            concat!(
                r#""packet":2330629888,"drop_reason":"NETFILTER_DROP","parent_packet":1,"summary":"ICMP x","caller":"nf_hook_slow+0x8f","stack":["kfree_skb_reason+0x9"],"retval":-22,"errno":"EINVAL","fate":{"kind":"dropped","reason":"NETFILTER_DROP"},"len":"84","mark":"0x55"}"#,
                "\n"
            )
        );
    }
}
