//! What each target means for a packet's life: where the skb is freed (so
//! the same pointer later names a new packet), where it is only being
//! released, and what its row says about how the packet ends ([`Step`]:
//! received, transmitted, delivered to a socket, dropped…). Decided once
//! per run from the targets' names.
use super::{Target, TargetKind};

/// What a target means for a packet's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Normal,
    /// The skb is freed here: the next unrelated call on the same pointer is
    /// a new packet.
    Frees,
    /// Part of freeing (releasing data, destructors): still the same packet.
    Releasing,
}

/// Functions that free an skb when kfree_skbmem (the true last step) is not
/// traced, e.g. because `-r` left it out.
const FREEING: &[&str] = &[
    "kfree_skb",
    "kfree_skb_reason",
    "sk_skb_reason_drop",
    "consume_skb",
    "__kfree_skb",
    "kfree_skb_list_reason",
    "napi_consume_skb",
    "__consume_stateless_skb",
    "skb_attempt_defer_free",
    "__napi_kfree_skb",
];

/// Each target's [`Role`], decided once from the names.
pub fn roles(targets: &[Target]) -> Vec<Role> {
    let function = |t: &Target| t.kind == TargetKind::Function;
    let has_kfree_skbmem = targets
        .iter()
        .any(|t| function(t) && t.name == "kfree_skbmem");
    targets
        .iter()
        .map(|t| match t.kind {
            // Tracepoints fire once the last reference is gone: exact.
            TargetKind::Tracepoint if matches!(t.name.as_str(), "kfree_skb" | "consume_skb") => {
                Role::Frees
            }
            TargetKind::Tracepoint => Role::Normal,
            // The skb's memory is freed, or parked in the per-CPU NAPI cache.
            _ if has_kfree_skbmem
                && matches!(t.name.as_str(), "kfree_skbmem" | "napi_skb_cache_put") =>
            {
                Role::Frees
            }
            _ if !has_kfree_skbmem && FREEING.contains(&t.name.as_str()) => Role::Frees,
            _ if is_releasing(&t.name) => Role::Releasing,
            _ => Role::Normal,
        })
        .collect()
}

/// What a target's row says about where its packet is going: the steps a
/// packet's fate is read from (`trace::fate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Says nothing about the fate.
    Pass,
    /// The packet arrives at a device (or again, after a veth or lo hop).
    Receive,
    /// The IP layer (or a bridge) forwards it.
    Forward,
    /// Queued to a device for transmission.
    Queue,
    /// Handed to a device's driver to be sent.
    Xmit,
    /// A tunnel takes it to wrap it in an outer header.
    Encap,
    /// Queued on (or answered by) a socket of this kind.
    Deliver(Socket),
    /// A socket's reader copies its data out (`skb_copy_datagram_iovec`):
    /// delivered to a socket of the packet's protocol.
    Read,
    /// Freed for good: dropped, unless its drop reason says consumed
    /// (kfree_skb without a reason, before 5.17, always drops).
    Drop,
    /// Freed after normal use.
    Consume,
}

/// Where a packet was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Socket {
    Udp,
    Tcp,
    Raw,
    /// A ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`).
    Icmp,
    /// Not a socket: the kernel answered the ICMP echo request.
    IcmpEcho,
}

/// Each target's [`Step`], decided once from the names. Tracepoints and
/// functions share names where they mean the same (`kfree_skb`,
/// `consume_skb`, `netif_receive_skb`).
pub fn steps(targets: &[Target]) -> Vec<Step> {
    targets.iter().map(step).collect()
}

fn step(target: &Target) -> Step {
    let name = target.name.as_str();
    let tracepoint = target.kind == TargetKind::Tracepoint;
    let socket = |sock| Step::Deliver(sock);
    match name {
        "kfree_skb" | "kfree_skb_reason" | "sk_skb_reason_drop" | "kfree_skb_list_reason" => {
            Step::Drop
        }
        "consume_skb" | "napi_consume_skb" | "__consume_stateless_skb" | "skb_consume_udp" => {
            Step::Consume
        }
        "netif_receive_skb"
        | "netif_receive_skb_entry"
        | "netif_receive_skb_list_entry"
        | "netif_rx"
        | "netif_rx_entry"
        | "napi_gro_receive_entry"
        | "napi_gro_frags_entry"
        | "__netif_receive_skb"
        | "__netif_receive_skb_core"
        | "__netif_receive_skb_one_core"
        | "netif_receive_skb_internal"
        | "__netif_rx"
        | "netif_rx_internal"
        | "napi_gro_receive"
        | "ip_rcv"
        | "ipv6_rcv" => Step::Receive,
        "ip_forward" | "ip6_forward" | "br_forward" | "__br_forward" => Step::Forward,
        "net_dev_queue" | "__dev_queue_xmit" | "dev_queue_xmit" => Step::Queue,
        "net_dev_start_xmit"
        | "net_dev_xmit"
        | "dev_hard_start_xmit"
        | "xmit_one"
        | "netdev_start_xmit"
        | "__dev_direct_xmit" => Step::Xmit,
        "ip_tunnel_xmit"
        | "iptunnel_xmit"
        | "ip6tunnel_xmit"
        | "ip6_tnl_xmit"
        | "udp_tunnel_xmit_skb"
        | "udp_tunnel6_xmit_skb"
        | "vxlan_xmit"
        | "geneve_xmit"
        | "ipgre_xmit"
        | "gre_tap_xmit"
        | "ipip_tunnel_xmit"
        | "ip6gre_tunnel_xmit"
        | "xfrm_output"
        | "wg_xmit" => Step::Encap,
        "skb_copy_datagram_iovec" | "skb_copy_datagram_iter" => Step::Read,
        _ if tracepoint => Step::Pass,
        "udp_queue_rcv_one_skb"
        | "udp_queue_rcv_skb"
        | "__udp_enqueue_schedule_skb"
        | "udpv6_queue_rcv_one_skb"
        | "udpv6_queue_rcv_skb" => socket(Socket::Udp),
        "tcp_v4_do_rcv"
        | "tcp_v6_do_rcv"
        | "tcp_rcv_established"
        | "tcp_rcv_state_process"
        | "tcp_add_backlog"
        | "tcp_data_queue"
        | "tcp_queue_rcv" => socket(Socket::Tcp),
        "raw_rcv" | "raw_rcv_skb" | "rawv6_rcv" | "rawv6_rcv_skb" => socket(Socket::Raw),
        "ping_rcv" | "ping_queue_rcv_skb" => socket(Socket::Icmp),
        "icmp_echo" | "icmpv6_echo_reply" => socket(Socket::IcmpEcho),
        _ => Step::Pass,
    }
}

/// Whether the skb's data is already freed when `target` is called:
/// kfree_skbmem and napi_skb_cache_put run after skb_release_data, so the
/// bytes `-w` would read there are stale.
pub fn data_freed(target: &Target) -> bool {
    target.kind == TargetKind::Function
        && matches!(target.name.as_str(), "kfree_skbmem" | "napi_skb_cache_put")
}

fn is_releasing(name: &str) -> bool {
    [
        "free",
        "release",
        "consume",
        "destructor",
        "orphan",
        "wfree",
        "rfree",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_frees_and_kfree_skbmem() {
        let target = |name: &str, kind| Target {
            kind,
            ..crate::discover::tests::candidate(name, "vmlinux").target
        };
        let tps = [
            target("net_dev_queue", TargetKind::Tracepoint),
            target("consume_skb", TargetKind::Tracepoint),
        ];
        assert_eq!(roles(&tps), [Role::Normal, Role::Frees]);
        let funcs = ["consume_skb", "skb_release_data", "kfree_skbmem"]
            .map(|n| target(n, TargetKind::Function));
        assert_eq!(
            roles(&funcs),
            [Role::Releasing, Role::Releasing, Role::Frees]
        );
        assert_eq!(roles(&funcs[..2]), [Role::Frees, Role::Releasing]);
    }

    #[test]
    fn steps_from_names() {
        let target = |name: &str, kind| Target {
            kind,
            ..crate::discover::tests::candidate(name, "vmlinux").target
        };
        use TargetKind::{Function, Tracepoint};
        let all = [
            target("net_dev_xmit", Tracepoint),
            target("kfree_skb", Tracepoint),
            target("skb_copy_datagram_iovec", Tracepoint),
            target("udp_queue_rcv_one_skb", Function),
            target("sk_skb_reason_drop", Function),
            target("ip_forward", Function),
            target("ip_rcv_finish", Function),
            target("tcp_probe", Tracepoint),
        ];
        assert_eq!(
            steps(&all),
            [
                Step::Xmit,
                Step::Drop,
                Step::Read,
                Step::Deliver(Socket::Udp),
                Step::Drop,
                Step::Forward,
                Step::Pass,
                Step::Pass,
            ]
        );
    }
}
