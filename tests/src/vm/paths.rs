//! Packets across namespaces: forwarding through three of them, a VXLAN
//! tunnel with and without `--track`, and `-f`'s selected flow through
//! forwarding, VXLAN and SRv6 with other traffic beside it.
use crate::parse::Packet;

use super::verdict::{any_match, entries, shorten, summary, Verdict};

pub(crate) const FORWARD_RE: &str = "^(ip_rcv|ip_forward|ip_forward_finish|ip_output|__dev_queue_xmit|dev_hard_start_xmit|veth_xmit|__dev_forward_skb|skb_scrub_packet)$";

/// The VXLAN overlay's transmit (module functions where the backend offers
/// them), the underlay's UDP transmit after the scrub, and its receive.
pub(crate) const TUNNEL_RE: &str = "^(ip_output|__dev_queue_xmit|vxlan_xmit|vxlan_xmit_one|udp_tunnel_xmit_skb|iptunnel_xmit|skb_scrub_packet|ip_local_out|__ip_local_out|ip_finish_output2|veth_xmit|ip_rcv|udp_rcv|vxlan_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

/// `-f`: the selected flow (`SELECTED` in scenarios.sh); other traffic
/// runs beside it on the same path.
pub(crate) const SELECTED_FILTER: &str = "udp and dst port 7777";

/// Three namespaces, the middle one forwarding.
pub(crate) const SELECT_FORWARD_RE: &str =
    "^(ip_output|veth_xmit|ip_rcv|ip_forward|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

pub(crate) const SELECT_FORWARD_STEPS: &[&[&str]] = &[
    &["ip_output"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["ip_forward"],
    &["ip_output"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["udp_rcv"],
];

/// The inner packet's send, the encapsulation, the veth crossing, the outer
/// receive and the decapsulation to the inner receive (whose IP receive is
/// ip_list_rcv from the GRO cells, not in the regex).
pub(crate) const SELECT_VXLAN_STEPS: &[&[&str]] = &[
    &["ip_output"],
    &["vxlan_xmit", "vxlan_xmit_one"],
    &["udp_tunnel_xmit_skb", "iptunnel_xmit"],
    &["ip_local_out", "__ip_local_out"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["udp_rcv"],
    &["vxlan_rcv"],
    &["udp_rcv"],
];

/// IPv4 into SRv6 (seg6 encap through the route's lwtunnel output), the
/// veth crossing, the IPv6 receive, End.DX4 (seg6local input) and the inner
/// local delivery.
pub(crate) const SRV6_RE: &str = "^(ip_local_out|__ip_local_out|ip_output|lwtunnel_output|seg6_output|seg6_output_core|seg6_do_srh_encap|ip6_output|ip6_finish_output2|veth_xmit|ipv6_rcv|ip6_rcv_finish|lwtunnel_input|seg6_local_input|seg6_local_input_core|input_action_end_dx4|ip_rcv|ip_local_deliver|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

pub(crate) const SRV6_STEPS: &[&[&str]] = &[
    &["ip_local_out", "__ip_local_out"],
    &["lwtunnel_output", "seg6_output*"],
    &["ip6_output", "ip6_finish_output2"],
    &["veth_xmit"],
    &["ipv6_rcv"],
    &[
        "lwtunnel_input",
        "seg6_local_input*",
        "input_action_end_dx4",
    ],
    &["ip_local_deliver"],
    &["udp_rcv"],
];

pub(crate) fn forward(groups: &[Packet], json: bool) -> Verdict {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| r.function == "ip_forward"))
    else {
        return Verdict::fail(format!(
            "no packet went through ip_forward; {}",
            summary(groups)
        ));
    };
    let rows = entries(g);
    let fwd = rows
        .iter()
        .position(|r| r.function == "ip_forward")
        .unwrap_or(0);
    let Some(veth) = rows[fwd..].iter().find(|r| r.function == "veth_xmit") else {
        return Verdict::fail(format!(
            "no veth_xmit after ip_forward: {}",
            shorten(&g.functions().join(","), 300)
        ));
    };
    if veth.module != "veth" {
        return Verdict::fail(format!(
            "veth_xmit shown with module {:?}, expected \"veth\" (module BTF)",
            veth.module
        ));
    }
    // Forwarded out of ns2 on v23; veth_xmit takes it into ns3, where the
    // mark is gone: never freed in view, so json (a fate on the freeing
    // line) has none.
    match (g.fate.as_deref(), json) {
        (Some("forwarded out v23"), _) | (None, true) => {}
        (fate, _) => {
            return Verdict::fail(format!("fate {fate:?}, expected \"forwarded out v23\""))
        }
    }
    Verdict::pass(format!(
        "ip_forward then veth_xmit [veth], {} rows; {}",
        g.rows.len(),
        g.fate
            .as_deref()
            .unwrap_or("no fate in json: not freed in view")
    ))
}

/// The VXLAN packet: iptunnel_xmit scrubs it (the mark is cleared: the
/// tunnel crosses namespaces). Without `--track` nothing follows the scrub;
/// with it, the same packet goes on through the underlay's IP output and is
/// received as UDP on the other side. `stderr` is ipft's `-v` output: 6.1's
/// fentry takes at most 6 arguments, iptunnel_xmit has 10.
pub(crate) fn tunnel(groups: &[Packet], tracked: bool, stderr: &str) -> Verdict {
    let unattached = stderr.contains("cannot attach iptunnel_xmit ");
    // The packet's first scrub is the tunnel's (crossing the veth comes later).
    let scrubbed = groups.iter().find_map(|g| {
        let rows = entries(g);
        let start = match rows.iter().position(|r| r.function == "iptunnel_xmit") {
            Some(i) => i,
            None if unattached => rows.iter().position(|r| r.function == "__dev_queue_xmit")?,
            None => return None,
        };
        let scrub = rows[start..]
            .iter()
            .position(|r| r.function == "skb_scrub_packet")?;
        Some((g, rows, start + scrub))
    });
    let Some((g, rows, scrub)) = scrubbed else {
        return Verdict::fail(format!(
            "no packet went through iptunnel_xmit then skb_scrub_packet; {}",
            summary(groups)
        ));
    };
    let after: Vec<&str> = rows[scrub + 1..]
        .iter()
        .map(|r| r.function.as_str())
        .collect();
    let names = || {
        let seen = shorten(&g.functions().join(","), 300);
        match unattached {
            true => format!("{seen} (iptunnel_xmit could not be attached)"),
            false => seen,
        }
    };
    if !tracked {
        return match after.is_empty() {
            true => Verdict::pass(format!("ends at skb_scrub_packet: {}", names())),
            false => Verdict::fail(format!(
                "rows after skb_scrub_packet without --track: {}",
                names()
            )),
        };
    }
    let out = after
        .iter()
        .position(|f| matches!(*f, "ip_local_out" | "__ip_local_out"));
    let received = out.and_then(|i| after[i..].iter().position(|f| *f == "udp_rcv"));
    match received {
        Some(_) => Verdict::pass(format!(
            "past skb_scrub_packet into ip_local_out … udp_rcv: {}",
            names()
        )),
        None => Verdict::fail(format!(
            "no ip_local_out then udp_rcv after skb_scrub_packet: {}",
            names()
        )),
    }
}

/// `-f` with other traffic beside the selected flow: every traced packet
/// is UDP to `to`:7777 (the pings and the UDP to 7778 stay out), and one
/// of them went through every step in order, however its headers changed.
pub(crate) fn selected(groups: &[Packet], to: &str, steps: &[&[&str]]) -> Verdict {
    let flow = format!(" -> {to}:7777 ");
    let other = groups.iter().find(|g| {
        let said = g.summary.as_deref().unwrap_or_default();
        !(said.starts_with("UDP ") && said.contains(&flow))
    });
    if let Some(g) = other {
        return Verdict::fail(format!(
            "a packet the filter does not select was traced: {:?} [{}]",
            g.summary,
            shorten(&g.functions().join(","), 200)
        ));
    }
    let followed = groups.iter().find_map(|g| {
        let rows = entries(g);
        let mut at = 0;
        for step in steps {
            at += rows[at..]
                .iter()
                .position(|r| any_match(&r.function, step))?
                + 1;
        }
        Some(g)
    });
    match followed {
        Some(g) => Verdict::pass(format!(
            "{} packet(s), all UDP to {to}:7777; followed: {}",
            groups.len(),
            shorten(&g.functions().join(","), 300)
        )),
        None => {
            let wanted: Vec<String> = steps.iter().map(|s| s.join("|")).collect();
            Verdict::fail(format!(
                "no packet went through {} in order; {}",
                wanted.join(","),
                summary(groups)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{testing::group, verdict::Status};

    #[test]
    fn tunnel_needs_rows_past_the_scrub_only_when_tracked() {
        let cut = ["__dev_queue_xmit", "iptunnel_xmit", "skb_scrub_packet"];
        let mut on = cut.to_vec();
        on.extend(["ip_local_out", "veth_xmit", "udp_rcv"]);
        assert_eq!(tunnel(&[group(&cut)], false, "").status, Status::Pass);
        assert_eq!(tunnel(&[group(&on)], false, "").status, Status::Fail);
        assert_eq!(tunnel(&[group(&on)], true, "").status, Status::Pass);
        assert_eq!(tunnel(&[group(&cut)], true, "").status, Status::Fail);
        // Without iptunnel_xmit only if ipft said it could not attach it.
        let fentry = ["__dev_queue_xmit", "skb_scrub_packet"];
        assert_eq!(tunnel(&[group(&fentry)], false, "").status, Status::Fail);
        let said = "cannot attach iptunnel_xmit (vmlinux): E2BIG\n";
        assert_eq!(tunnel(&[group(&fentry)], false, said).status, Status::Pass);
    }

    #[test]
    fn selected_needs_the_flow_only_and_the_whole_path() {
        let flow = |names: &[&str], summary: &str| Packet {
            summary: Some(summary.to_string()),
            ..group(names)
        };
        let udp = "UDP 10.0.1.1:40000 -> 10.0.2.2:7777 len 33 dev v12";
        let path = [
            "ip_output",
            "veth_xmit",
            "ip_rcv",
            "ip_forward",
            "ip_output",
            "veth_xmit",
            "ip_rcv",
            "udp_rcv",
        ];
        let whole = flow(&path, udp);
        let steps = SELECT_FORWARD_STEPS;
        assert_eq!(
            selected(std::slice::from_ref(&whole), "10.0.2.2", steps).status,
            Status::Pass
        );
        // A retransmission seen only in part is the same flow: fine.
        let part = flow(&path[..3], udp);
        let both = [part.clone(), whole.clone()];
        assert_eq!(selected(&both, "10.0.2.2", steps).status, Status::Pass);
        assert_eq!(selected(&[part], "10.0.2.2", steps).status, Status::Fail);
        // Other traffic must not be there.
        let other = flow(&path, "UDP 10.0.1.1:40001 -> 10.0.2.2:7778 len 33 dev v12");
        let ping = flow(
            &path,
            "ICMP 10.0.1.1 -> 10.0.2.2 type 8 code 0 len 84 dev v12",
        );
        for intruder in [other, ping, group(&path)] {
            let v = selected(&[whole.clone(), intruder], "10.0.2.2", steps);
            assert_eq!(v.status, Status::Fail, "{}", v.reason);
        }
    }
}
