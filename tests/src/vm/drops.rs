//! Drops and deliveries: the nft drop (its last rows, its reason, its
//! stack), and UDP to a closed port and to a bound socket.
use crate::parse::{Packet, Row};

use super::verdict::{entries, shorten, summary, Verdict};

/// Delivery and drop functions, but none of the helpers a free calls, so
/// the drop must be the packet's last row.
pub(crate) const DROP_RE: &str = "^(__dev_queue_xmit|loopback_xmit|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|nf_hook_slow|kfree_skb|kfree_skb_reason|kfree_skb_list_reason|sk_skb_reason_drop|__kfree_skb|consume_skb)$";

/// UDP over loopback into its socket, or, with the port closed, into
/// UDP's drop and ICMP's answer; the socket's read frees it.
pub(crate) const UDP_RE: &str = "^(ip_output|__dev_queue_xmit|loopback_xmit|ip_rcv|ip_local_deliver|udp_rcv|__udp4_lib_rcv|udp_queue_rcv_one_skb|udp_queue_rcv_skb|__udp_enqueue_schedule_skb|skb_consume_udp|__consume_stateless_skb|icmp_send|__icmp_send|consume_skb|kfree_skb|kfree_skb_reason|sk_skb_reason_drop)$";

/// The ports of scenarios.sh: `UDP_CLOSED` (nobody listens) and
/// `UDP_BOUND` (socat reads).
pub(crate) const UDP_CLOSED: &str = "127.0.0.1:7779";

pub(crate) const UDP_BOUND: &str = "127.0.0.1:7780";

/// Functions that drop a packet (6.12 turned kfree_skb_reason into an
/// inline wrapper of sk_skb_reason_drop); kfree_skbmem only frees memory.
pub(crate) fn is_kfree(name: &str) -> bool {
    matches!(
        name,
        "kfree_skb"
            | "kfree_skb_reason"
            | "kfree_skb_list_reason"
            | "sk_skb_reason_drop"
            | "__kfree_skb"
    )
}

pub(crate) fn drop(groups: &[Packet]) -> Verdict {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| is_kfree(&r.function)))
    else {
        return Verdict::fail(format!(
            "no packet reached a kfree_skb-family function; {}",
            summary(groups)
        ));
    };
    let rows = entries(g);
    let n = rows.len();
    let names: Vec<&str> = rows.iter().map(|r| r.function.as_str()).collect();
    if n < 2 || names[n - 2] != "nf_hook_slow" || !is_kfree(names[n - 1]) {
        return Verdict::fail(format!(
            "last rows are not nf_hook_slow, kfree_skb…: {}",
            shorten(&names.join(","), 300)
        ));
    }
    Verdict::pass(format!("ends nf_hook_slow → {}", names[n - 1]))
}

/// The drop names its reason: netfilter's verdict.
pub(crate) fn drop_reason(groups: &[Packet]) -> Verdict {
    let dropped = groups
        .iter()
        .flat_map(|g| entries(g))
        .find(|r| is_kfree(&r.function) && r.drop_reason.is_some());
    match dropped {
        Some(r) if r.drop_reason.as_deref() == Some("NETFILTER_DROP") => {
            let fate = groups.iter().find_map(|g| g.fate.as_deref());
            match fate.filter(|f| dropped_by_netfilter(f)) {
                Some(fate) => Verdict::pass(format!(
                    "{} (drop: NETFILTER_DROP); fate: {fate}",
                    r.function
                )),
                None => Verdict::fail(format!(
                    "fate {fate:?}, expected \"dropped at nf_hook_slow+… (NETFILTER_DROP)\" or nft_do_chain"
                )),
            }
        }
        Some(r) => Verdict::fail(format!(
            "{} dropped with reason {:?}, expected NETFILTER_DROP",
            r.function, r.drop_reason
        )),
        None => Verdict::fail(format!(
            "no kfree_skb-family row with a drop reason; {}",
            summary(groups)
        )),
    }
}

/// `dropped at CALLER (NETFILTER_DROP)` with the caller in netfilter's hook
/// (`nf_hook_slow`, 6.1) or nf_tables' chain (`nf_tables:nft_do_chain`,
/// newer kernels drop there).
pub(crate) fn dropped_by_netfilter(fate: &str) -> bool {
    dropped_at(fate, "NETFILTER_DROP")
        .is_some_and(|f| f.starts_with("nf_hook_slow") || f.starts_with("nft_do_chain"))
}

/// The function of CALLER in a fate `dropped at CALLER (REASON)`, where
/// CALLER is `[module:]function+0xOFFSET`.
pub(crate) fn dropped_at<'a>(fate: &'a str, reason: &str) -> Option<&'a str> {
    let caller = fate
        .strip_prefix("dropped at ")?
        .strip_suffix(&format!(" ({reason})"))?;
    caller.contains("+0x").then(|| frame_function(caller))
}

/// `nf_tables:nft_do_chain+0x47f` → `nft_do_chain`.
pub(crate) fn frame_function(frame: &str) -> &str {
    let function = frame.split('+').next().unwrap_or_default();
    function.rsplit(':').next().unwrap_or_default()
}

/// `--stack=drops` on the nft drop: the drop row, and no other, shows its
/// kernel stack, which goes from the freeing function out through
/// nf_hook_slow.
pub(crate) fn drop_stack(groups: &[Packet]) -> Verdict {
    let rows: Vec<&Row> = groups.iter().flat_map(|g| entries(g)).collect();
    let dropping = |r: &Row| is_kfree(&r.function) && r.drop_reason.is_some();
    let Some(drop) = rows.iter().find(|r| dropping(r)) else {
        return Verdict::fail(format!(
            "no kfree_skb-family row with a drop reason; {}",
            summary(groups)
        ));
    };
    if drop.drop_reason.as_deref() != Some("NETFILTER_DROP") {
        return Verdict::fail(format!(
            "{} dropped with reason {:?}, expected NETFILTER_DROP",
            drop.function, drop.drop_reason
        ));
    }
    if let Some(r) = rows.iter().find(|r| !r.stack.is_empty() && !dropping(r)) {
        return Verdict::fail(format!(
            "{} (no drop) has a stack, but --stack=drops shows drop rows only: {}",
            r.function,
            shorten(&r.stack.join(" ← "), 300)
        ));
    }
    let frames: Vec<&str> = drop.stack.iter().map(|f| frame_function(f)).collect();
    let freeing = frames
        .iter()
        .position(|f| *f == drop.function || is_kfree(f));
    let hook = freeing.and_then(|i| frames[i + 1..].iter().position(|f| *f == "nf_hook_slow"));
    let stack = shorten(&drop.stack.join(" ← "), 400);
    match (freeing, hook) {
        (Some(i), Some(h)) => Verdict::pass(format!(
            "{}'s stack: {} ← … ({} frames)",
            drop.function,
            drop.stack[i..=i + 1 + h].join(" ← "),
            frames.len()
        )),
        (None, _) => Verdict::fail(format!(
            "{}'s stack has no kfree_skb-family frame: [{stack}]",
            drop.function
        )),
        (Some(i), None) => Verdict::fail(format!(
            "{}'s stack has no nf_hook_slow under {}: [{stack}]",
            drop.function, frames[i]
        )),
    }
}

/// The one packet of the UDP datagram to `to`, by its summary line.
pub(crate) fn udp_packet<'a>(groups: &'a [Packet], to: &str) -> Result<&'a Packet, Verdict> {
    let flow = format!(" -> {to} ");
    let mut sent = groups.iter().filter(|g| {
        let said = g.summary.as_deref().unwrap_or_default();
        said.starts_with("UDP ") && said.contains(&flow)
    });
    match (sent.next(), sent.next()) {
        (Some(g), None) => Ok(g),
        (None, _) => Err(Verdict::fail(format!(
            "no packet of UDP to {to}; summaries {:?}; {}",
            groups.iter().map(|g| &g.summary).collect::<Vec<_>>(),
            summary(groups)
        ))),
        (Some(_), Some(_)) => Err(Verdict::fail(format!(
            "more than one packet of UDP to {to} for one datagram; {}",
            summary(groups)
        ))),
    }
}

/// UDP to a closed port: UDP's receive drops it with NO_SOCKET, and the
/// fate names the caller of the freeing call there (`__udp4_lib_rcv+0x…`)
/// as the drop row does.
pub(crate) fn udp_closed(groups: &[Packet]) -> Verdict {
    let g = match udp_packet(groups, UDP_CLOSED) {
        Ok(g) => g,
        Err(v) => return v,
    };
    let names = || shorten(&g.functions().join(","), 300);
    let rows = entries(g);
    let Some(drop) = rows.iter().find(|r| r.drop_reason.is_some()) else {
        return Verdict::fail(format!("no row with a drop reason: {}", names()));
    };
    if !is_kfree(&drop.function) || drop.drop_reason.as_deref() != Some("NO_SOCKET") {
        return Verdict::fail(format!(
            "{} (drop: {:?}), expected a kfree_skb-family row with NO_SOCKET: {}",
            drop.function,
            drop.drop_reason,
            names()
        ));
    }
    let fate = g.fate.as_deref().unwrap_or_default();
    let by_udp =
        dropped_at(fate, "NO_SOCKET").is_some_and(|f| matches!(f, "__udp4_lib_rcv" | "udp_rcv"));
    if !by_udp {
        return Verdict::fail(format!(
            "fate {:?}, expected \"dropped at __udp4_lib_rcv+0x… (NO_SOCKET)\" (or udp_rcv): {}",
            g.fate,
            names()
        ));
    }
    if let Some(caller) = &drop.caller {
        if fate != format!("dropped at {caller} (NO_SOCKET)") {
            return Verdict::fail(format!(
                "fate {fate:?}, but the drop row's caller is {caller}"
            ));
        }
    }
    Verdict::pass(format!("{} (drop: NO_SOCKET); fate: {fate}", drop.function))
}

/// UDP to a socket that reads it: queued on the socket, read, freed:
/// `delivered to UDP socket`; the reader (socat) got the bytes.
pub(crate) fn udp_bound(groups: &[Packet], log: &str) -> Verdict {
    let g = match udp_packet(groups, UDP_BOUND) {
        Ok(g) => g,
        Err(v) => return v,
    };
    if g.fate.as_deref() != Some("delivered to UDP socket") {
        return Verdict::fail(format!(
            "fate {:?}, expected \"delivered to UDP socket\": {}",
            g.fate,
            shorten(&g.functions().join(","), 300)
        ));
    }
    if !log.lines().any(|l| l == "received: ipft-udp") {
        return Verdict::fail(format!(
            "fate delivered, but socat did not read the datagram: {}",
            shorten(log.trim(), 300)
        ));
    }
    Verdict::pass(format!(
        "fate: delivered to UDP socket; read by socat; {}",
        shorten(&g.functions().join(","), 120)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{testing::group, verdict::Status};

    #[test]
    fn a_netfilter_drop_fate_names_its_hook_or_chain() {
        assert!(dropped_by_netfilter(
            "dropped at nf_hook_slow+0x9c (NETFILTER_DROP)"
        ));
        assert!(dropped_by_netfilter(
            "dropped at nf_tables:nft_do_chain+0x47f (NETFILTER_DROP)"
        ));
        assert!(!dropped_by_netfilter(
            "dropped at __udp4_lib_rcv+0x4bc (NO_SOCKET)"
        ));
        assert!(!dropped_by_netfilter(
            "dropped at nf_hook_slow (NETFILTER_DROP)"
        ));
        assert!(!dropped_by_netfilter("consumed"));
    }

    #[test]
    fn drop_must_end_the_packet() {
        assert_eq!(
            drop(&[group(&["ip_rcv", "nf_hook_slow", "kfree_skb_reason"])]).status,
            Status::Pass
        );
        assert_eq!(
            drop(&[group(&["nf_hook_slow", "kfree_skb_reason", "ip_rcv"])]).status,
            Status::Fail
        );
    }

    /// `names`, the last one freeing with `reason`, its stack `stack`.
    fn dropped(names: &[&str], reason: &str, stack: &[&str]) -> Packet {
        let mut g = group(names);
        let last = g.rows.last_mut().unwrap();
        last.drop_reason = Some(reason.into());
        last.stack = stack.iter().map(|f| f.to_string()).collect();
        g
    }

    #[test]
    fn drop_stack_needs_nf_hook_slow_under_the_free_on_the_drop_row_only() {
        let names = ["ip_local_deliver", "nf_hook_slow", "sk_skb_reason_drop"];
        let stack = [
            "sk_skb_reason_drop+0x5",
            "nf_tables:nft_do_chain+0x47f",
            "nf_hook_slow+0x9c",
            "ip_local_deliver+0x4d",
        ];
        let ok = dropped(&names, "NETFILTER_DROP", &stack);
        let v = drop_stack(std::slice::from_ref(&ok));
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        // nf_hook_slow above the free, or missing.
        let above = dropped(
            &names,
            "NETFILTER_DROP",
            &["nf_hook_slow+0x9c", "kfree_skb+0x5"],
        );
        assert_eq!(drop_stack(&[above]).status, Status::Fail);
        let no_hook = dropped(&names, "NETFILTER_DROP", &stack[..2]);
        assert_eq!(drop_stack(&[no_hook]).status, Status::Fail);
        assert_eq!(drop_stack(&[group(&names)]).status, Status::Fail);
        // Another reason, or a stack on a row that does not drop.
        let other = dropped(&names, "NO_SOCKET", &stack);
        assert_eq!(drop_stack(&[other]).status, Status::Fail);
        let mut extra = ok;
        extra.rows[1].stack = vec!["nf_hook_slow+0x0".into()];
        assert_eq!(drop_stack(&[extra]).status, Status::Fail);
    }

    #[test]
    fn udp_closed_is_dropped_by_udp_with_no_socket() {
        let names = ["ip_rcv", "udp_rcv", "icmp_send", "kfree_skb_reason"];
        let packet = |reason: &str, fate: &str| Packet {
            summary: Some("UDP 127.0.0.1:36133 -> 127.0.0.1:7779 len 45 dev lo".into()),
            fate: Some(fate.into()),
            ..dropped(&names, reason, &[])
        };
        let fate = "dropped at __udp4_lib_rcv+0x4bc (NO_SOCKET)";
        let v = udp_closed(&[packet("NO_SOCKET", fate)]);
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        let wrong = [
            packet("NOT_SPECIFIED", fate),
            packet("NO_SOCKET", "dropped at __udp4_lib_rcv (NO_SOCKET)"),
            packet("NO_SOCKET", "dropped at nf_hook_slow+0x9c (NO_SOCKET)"),
            packet("NO_SOCKET", "consumed"),
        ];
        for p in wrong {
            assert_eq!(udp_closed(&[p]).status, Status::Fail);
        }
        // The drop row's caller and the fate's agree.
        let mut p = packet("NO_SOCKET", fate);
        p.rows.last_mut().unwrap().caller = Some("udp_rcv+0x10".into());
        assert_eq!(udp_closed(&[p]).status, Status::Fail);
        // Only the datagram to the closed port counts.
        let mut elsewhere = packet("NO_SOCKET", fate);
        elsewhere.summary = Some("UDP 127.0.0.1:36133 -> 127.0.0.1:7780 len 45 dev lo".into());
        assert_eq!(udp_closed(&[elsewhere]).status, Status::Fail);
    }

    #[test]
    fn udp_bound_is_delivered_and_read() {
        let packet = |fate: &str| Packet {
            summary: Some("UDP 127.0.0.1:40000 -> 127.0.0.1:7780 len 45 dev lo".into()),
            fate: Some(fate.into()),
            ..group(&["udp_rcv", "__udp_enqueue_schedule_skb", "skb_consume_udp"])
        };
        let read = "received: ipft-udp\n";
        let ok = packet("delivered to UDP socket");
        assert_eq!(
            udp_bound(std::slice::from_ref(&ok), read).status,
            Status::Pass
        );
        assert_eq!(
            udp_bound(std::slice::from_ref(&ok), "received: \n").status,
            Status::Fail
        );
        assert_eq!(udp_bound(&[packet("consumed")], read).status, Status::Fail);
        assert_eq!(udp_bound(&[ok.clone(), ok], read).status, Status::Fail);
    }
}
