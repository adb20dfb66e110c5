//! The loopback ping, traced by every backend (the tracepoint backend
//! sees skb tracepoints only), `auto`'s choice, and the scale run that
//! attaches every skb function.
use crate::parse::{self, Packet};

use super::{
    graph::graph,
    verdict::{any_match, entries, shorten, summary, Features, Status, Verdict},
    CaseOutput,
};

/// Functions the loopback scenario needs, kept small so attaching is quick.
pub(crate) const LOOPBACK_RE: &str = "^(ip_output|ip6_output|ip_finish_output2?|__?dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|__netif_rx|netif_rx|__netif_receive_skb.*|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop|__kfree_skb)$";

/// Loopback milestones in order: each step is a set of acceptable names
/// (kernels rename and inline these over time).
pub(crate) const LOOPBACK_STEPS: &[&[&str]] = &[
    &["ip_output", "ip6_output"],
    &["dev_queue_xmit", "__dev_queue_xmit"],
    &["loopback_xmit"],
    &["__netif_receive_skb*"],
    &["ip_rcv"],
    &["ip_local_deliver"],
    &["icmp_rcv", "udp_rcv"],
    &[
        "consume_skb",
        "kfree_skb*",
        "sk_skb_reason_drop",
        "__kfree_skb",
    ],
];

/// The same packet seen by the tracepoint backend: skb tracepoints only.
pub(crate) const TRACEPOINT_STEPS: &[&[&str]] = &[
    &["net_dev_queue"],
    &["net_dev_start_xmit", "net_dev_xmit"],
    &["netif_rx*", "netif_receive_skb*"],
    &["consume_skb", "kfree_skb"],
];

pub(crate) fn loopback(groups: &[Packet], aggregate: bool) -> Verdict {
    in_order(groups, "loopback_xmit", LOOPBACK_STEPS, aggregate)
        .map(|n| Verdict::pass(format!("{n} rows, TX→loopback_xmit→RX→free in order")))
        .unwrap_or_else(Verdict::fail)
}

pub(crate) fn tracepoints(groups: &[Packet], aggregate: bool) -> Verdict {
    in_order(groups, "net_dev_queue", TRACEPOINT_STEPS, aggregate)
        .map(|n| {
            Verdict::pass(format!(
                "{n} rows, net_dev_queue→xmit→receive→free in order"
            ))
        })
        .unwrap_or_else(Verdict::fail)
}

/// Finds the packet that went through `anchor` and checks it passed every
/// step in order (other rows may come between); returns its row count.
pub(crate) fn in_order(
    groups: &[Packet],
    anchor: &str,
    steps: &[&[&str]],
    aggregate: bool,
) -> Result<usize, String> {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| r.function == anchor))
    else {
        return Err(format!(
            "no packet went through {anchor}; {}",
            summary(groups)
        ));
    };
    if aggregate {
        if let Some(w) = g.rows.windows(2).find(|w| w[1].tstamp < w[0].tstamp) {
            return Err(format!(
                "rows out of timestamp order: {} then {}",
                w[0].tstamp, w[1].tstamp
            ));
        }
    }
    let rows = entries(g);
    let mut at = 0;
    for step in steps {
        match rows[at..].iter().position(|r| any_match(&r.function, step)) {
            Some(i) => at += i + 1,
            None => {
                return Err(format!(
                    "missing {} (in order) in the packet: {}",
                    step.join("|"),
                    shorten(&g.functions().join(","), 300)
                ))
            }
        }
    }
    Ok(g.rows.len())
}

/// The backend `auto` announced on stderr.
pub(crate) fn chosen_backend(stderr: &str) -> Option<&'static str> {
    let line = stderr
        .lines()
        .find(|l| l.to_lowercase().contains("backend"))?;
    [
        "kprobe-multi",
        "kprobe_multi",
        "tracepoint",
        "ftrace",
        "fentry",
        "kprobe",
    ]
    .into_iter()
    .find(|b| line.contains(b))
    .map(|b| match b {
        "kprobe_multi" => "kprobe-multi",
        "fentry" => "ftrace",
        b => b,
    })
}

pub(crate) fn auto(
    out: &CaseOutput,
    groups: &[Packet],
    features: &Features,
    implemented: &[String],
    graph_tracer: bool,
) -> Verdict {
    let Some(chosen) = chosen_backend(&out.stderr) else {
        return Verdict::fail("auto printed no stderr line naming the chosen backend");
    };
    if !features.has(chosen) {
        return Verdict::fail(format!("auto chose {chosen}, which this kernel lacks"));
    }
    if graph_tracer && chosen == "tracepoint" {
        return Verdict::fail("function_graph needs returns, but auto chose tracepoint");
    }
    let best = ["kprobe-multi"]
        .into_iter()
        .find(|b| implemented.iter().any(|i| i == b) && features.has(b));
    if let Some(best) = best {
        if chosen != best {
            return Verdict::fail(format!(
                "auto chose {chosen} although {best} is implemented and available"
            ));
        }
    }
    let traced = if graph_tracer {
        graph(groups, true)
    } else {
        loopback(groups, false)
    };
    match traced.status {
        Status::Pass => Verdict::pass(format!("chose {chosen}; {}", traced.reason)),
        _ => Verdict::fail(format!("chose {chosen}, but: {}", traced.reason)),
    }
}

pub(crate) fn scale(out: &CaseOutput, groups: &[Packet]) -> Verdict {
    let Some(a) = parse::attach(&out.stderr) else {
        return Verdict::fail("no `Attaching program (total …)` line on stderr");
    };
    let ready = out.ready_ms.unwrap_or(0) as f64 / 1000.0;
    let stop = out.stop_ms as f64 / 1000.0;
    let numbers = format!(
        "total {}, succeeded {}, failed {}, filtered {}; ready {ready:.1} s, exit {stop:.1} s",
        a.total, a.succeeded, a.failed, a.filtered
    );
    if a.total < 1000 || a.succeeded * 5 < a.total * 4 {
        return Verdict::fail(format!("too few functions attached: {numbers}"));
    }
    if a.succeeded + a.failed + a.filtered != a.total {
        return Verdict::fail(format!("counts do not add up: {numbers}"));
    }
    let traced = loopback(groups, true);
    if traced.status != Status::Pass {
        return Verdict::fail(format!("{numbers}; but {}", traced.reason));
    }
    Verdict::pass(format!("{numbers}; {}", traced.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::testing::group;

    #[test]
    fn loopback_needs_every_step_in_order() {
        let ok = group(&[
            "ip_output",
            "__dev_queue_xmit",
            "loopback_xmit",
            "__netif_receive_skb_one_core",
            "ip_rcv",
            "ip_local_deliver",
            "icmp_rcv",
            "consume_skb",
        ]);
        assert_eq!(loopback(&[ok], true).status, Status::Pass);
        let swapped = group(&["ip_output", "loopback_xmit", "__dev_queue_xmit", "ip_rcv"]);
        assert_eq!(loopback(&[swapped], true).status, Status::Fail);
    }

    #[test]
    fn tracepoint_path_in_order() {
        let g = group(&[
            "net_dev_queue",
            "net_dev_start_xmit",
            "netif_rx",
            "netif_receive_skb",
            "consume_skb",
        ]);
        assert_eq!(tracepoints(&[g], true).status, Status::Pass);
    }

    #[test]
    fn finds_the_announced_backend() {
        assert_eq!(
            chosen_backend("auto: using backend kprobe-multi (fprobe works)\n"),
            Some("kprobe-multi")
        );
        assert_eq!(
            chosen_backend("Backend: ftrace, because …\n"),
            Some("ftrace")
        );
        assert_eq!(chosen_backend("Trace ready!\n"), None);
    }
}
