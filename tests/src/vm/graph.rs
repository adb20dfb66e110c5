//! function_graph: entries and returns balanced and indented by depth,
//! and the values functions return.
use crate::parse::{self, Packet, Row};

use super::verdict::{shorten, summary, Verdict};

/// Nested calls on the loopback path, plus consume_skb whose return comes
/// after the skb is freed.
pub(crate) const GRAPH_RE: &str = "^(ip_output|ip_finish_output2?|__dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|__netif_receive_skb.*|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|consume_skb)$";

/// function_graph: entries and returns pair up, indentation follows depth.
pub(crate) fn graph(groups: &[Packet], json: bool) -> Verdict {
    if groups.is_empty() {
        return Verdict::fail("no packet traced");
    }
    let mut deepest = 0;
    for g in groups {
        let mut stack: Vec<&str> = Vec::new();
        for r in &g.rows {
            if r.is_return {
                let Some(open) = stack.pop() else {
                    return Verdict::fail(format!(
                        "return at depth 0 (negative depth) in {}",
                        shorten(&g.functions().join(","), 200)
                    ));
                };
                if json && r.function != open {
                    return Verdict::fail(format!("return of {} while {open} is open", r.function));
                }
            } else {
                stack.push(&r.function);
            }
            let depth = if r.is_return {
                stack.len()
            } else {
                stack.len() - 1
            };
            if !json && r.indent != 2 * depth {
                return Verdict::fail(format!(
                    "{} indented {} spaces at depth {depth}",
                    display(r),
                    r.indent
                ));
            }
            deepest = deepest.max(stack.len());
        }
        if let Some(open) = stack.last() {
            return Verdict::fail(format!(
                "{open} (and {} more) entered but never returned",
                stack.len() - 1
            ));
        }
    }
    if deepest < 2 {
        return Verdict::fail(format!(
            "no nesting shown (max depth {deepest}); {}",
            summary(groups)
        ));
    }
    let rows: usize = groups.iter().map(|g| g.rows.len()).sum();
    Verdict::pass(format!("{rows} rows balanced, max depth {deepest}"))
}

/// function_graph on the loopback ping: int functions show their value
/// (the echo request is delivered: 0), void ones none.
pub(crate) fn returns_loopback(groups: &[Packet]) -> Verdict {
    let all: Vec<(String, Option<String>)> = groups
        .iter()
        .flat_map(|g| parse::returns(&g.rows))
        .collect();
    let value = |name: &str| {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };
    let expected = [
        ("ip_rcv", Some("0")),
        ("icmp_rcv", Some("0")),
        ("consume_skb", None),
    ];
    for (name, want) in expected {
        if value(name) != Some(want) {
            return Verdict::fail(format!(
                "{name} returned {:?}, expected {want:?}; returns: {}",
                value(name),
                shorten(&format!("{all:?}"), 300)
            ));
        }
    }
    Verdict::pass("ip_rcv = 0, icmp_rcv = 0, consume_skb (void)")
}

/// function_graph through the nft drop: the hook's verdict comes back as
/// nf_hook_slow's `-1 EPERM`.
pub(crate) fn returns_errno(groups: &[Packet]) -> Verdict {
    let all: Vec<(String, Option<String>)> = groups
        .iter()
        .flat_map(|g| parse::returns(&g.rows))
        .collect();
    let found = all
        .iter()
        .any(|(n, v)| n == "nf_hook_slow" && v.as_deref() == Some("-1 EPERM"));
    match found {
        true => Verdict::pass("nf_hook_slow = -1 EPERM"),
        false => Verdict::fail(format!(
            "no nf_hook_slow return of -1 EPERM; returns: {}",
            shorten(&format!("{all:?}"), 300)
        )),
    }
}

pub(crate) fn display(r: &Row) -> String {
    if r.is_return {
        "}".into()
    } else {
        format!("{}()", r.function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::verdict::Status;

    #[test]
    fn graph_pairs_entries_and_returns() {
        let row = |f: &str, ret, indent| Row {
            tstamp: 0,
            cpu: 0,
            module: "vmlinux".into(),
            function: f.into(),
            is_return: ret,
            indent,
            ..Row::default()
        };
        let ok = Packet {
            rows: vec![
                row("a", false, 0),
                row("b", false, 2),
                row("b", true, 2),
                row("a", true, 0),
            ],
            ..Packet::default()
        };
        assert_eq!(graph(&[ok], false).status, Status::Pass);
        let open = Packet {
            rows: vec![row("a", false, 0), row("b", false, 2), row("b", true, 2)],
            ..Packet::default()
        };
        assert_eq!(graph(&[open], false).status, Status::Fail);
    }
}
