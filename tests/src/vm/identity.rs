//! Which packet is which: an skb's memory reused by the next ping, and a
//! clone that names its original.
use crate::parse::Packet;

use super::verdict::{shorten, summary, Verdict};

/// The loopback path, plus the free of the skb's memory that tells ipft a
/// later skb at the same address is another packet.
pub(crate) const REUSE_RE: &str = "^(ip_output|__dev_queue_xmit|loopback_xmit|ip_rcv|ip_local_deliver|icmp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop|kfree_skbmem)$";

/// Echo requests the reuse scenario sends: `REUSE_COUNT` in scenarios.sh.
pub(crate) const REUSE_COUNT: usize = 6;

/// A broadcast's path: ip_mc_output clones it for local delivery.
pub(crate) const CLONE_RE: &str = "^(ip_output|ip_mc_output|ip_mc_finish_output|skb_clone|__dev_queue_xmit|veth_xmit|dev_loopback_xmit|ip_rcv|icmp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

/// Pings in sequence over loopback: one packet per echo request, each from
/// the send path to its own kfree_skbmem, with distinct `packet` numbers
/// although the kernel handed the same skb memory out again.
pub(crate) fn reuse(groups: &[Packet]) -> Verdict {
    if groups.len() != REUSE_COUNT {
        return Verdict::fail(format!(
            "{} packets for {REUSE_COUNT} echo requests; {}",
            groups.len(),
            summary(groups)
        ));
    }
    for g in groups {
        let names = g.functions();
        if names.first() != Some(&"ip_output") || names.last() != Some(&"kfree_skbmem") {
            return Verdict::fail(format!(
                "a packet does not run from ip_output to kfree_skbmem: {}",
                shorten(&names.join(","), 300)
            ));
        }
    }
    let numbers: std::collections::BTreeSet<_> = groups.iter().map(|g| g.packet).collect();
    if numbers.len() != groups.len() || numbers.contains(&None) {
        return Verdict::fail(format!("packet numbers not distinct: {numbers:?}"));
    }
    let ids: std::collections::BTreeSet<_> = groups
        .iter()
        .map(|g| g.rows[0].packet_id.as_str())
        .collect();
    if ids.len() == groups.len() {
        return Verdict::fail(format!(
            "the kernel never reused an skb in {REUSE_COUNT} pings (all packet_id distinct): nothing shown"
        ));
    }
    Verdict::pass(format!(
        "{} packets ip_output→kfree_skbmem, distinct numbers on {} skb addresses",
        groups.len(),
        ids.len()
    ))
}

/// `--track` on a broadcast: the looped-back clone is a packet of its own
/// that names the original (aggregate: by its first timestamp; json: by
/// its `packet` number).
pub(crate) fn clone_of(groups: &[Packet], json: bool) -> Verdict {
    const CLONE_OF: &str = "(clone of the packet first seen at ";
    let parent_of = |g: &Packet| -> Option<&Packet> {
        if json {
            let parent = g.parent?;
            groups.iter().find(|p| p.packet == Some(parent))
        } else {
            let at = g.summary.as_deref()?.split_once(CLONE_OF)?.1;
            let ts: u64 = at.strip_suffix(')')?.parse().ok()?;
            groups
                .iter()
                .find(|p| p.rows.first().map(|r| r.tstamp) == Some(ts))
        }
    };
    let found = groups.iter().find_map(|g| {
        parent_of(g)
            .filter(|p| !std::ptr::eq(*p, g))
            .map(|p| (g, p))
    });
    let Some((clone, parent)) = found else {
        let said: Vec<&str> = groups.iter().filter_map(|g| g.summary.as_deref()).collect();
        return Verdict::fail(format!(
            "no packet names another as its parent (summaries: {said:?}); {}",
            summary(groups)
        ));
    };
    Verdict::pass(format!(
        "clone [{}] of [{}]",
        shorten(&clone.functions().join(","), 120),
        shorten(&parent.functions().join(","), 120)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{testing::group, verdict::Status};

    #[test]
    fn clone_names_its_parent_by_first_timestamp() {
        let parent = group(&["ip_mc_output", "skb_clone"]);
        let mut clone = group(&["skb_clone", "ip_rcv"]);
        clone.summary =
            Some("ICMP 10.0.6.1 -> 10.0.6.255 (clone of the packet first seen at 0)".into());
        for r in &mut clone.rows {
            r.tstamp += 5;
        }
        assert_eq!(clone_of(&[parent, clone], false).status, Status::Pass);
        let alone = group(&["skb_clone", "ip_rcv"]);
        assert_eq!(clone_of(&[alone], false).status, Status::Fail);
    }
}
