//! How each packet ended, read from its rows as they arrive: the last
//! decisive [`Step`] wins (a packet sent out of a veth and received on its
//! peer is not "sent out"), a drop or a free settles it, and a packet
//! whose skb was never freed ends with what it last did, or in flight.
//!
//! What each backend can tell: the tracepoint backend sees receives,
//! queueing, transmissions, `skb_copy_datagram_iovec` (a socket's reader
//! took the data: delivered) and the frees (`kfree_skb` with its reason
//! and location, `consume_skb`); function backends also see the socket
//! queues, forwarding, tunnels and ICMP echo.
use std::collections::{HashMap, HashSet};

use ipft_common::{Event, EVENT_CLONE, EVENT_DROP_REASON, EVENT_RETURN, EVENT_STACK};

use super::summary;
use crate::discover::roles::{Role, Socket, Step};

/// How a packet ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not freed, and nothing said where it went.
    InFlight,
    Delivered(Socket),
    /// Transmitted on this device, never received before.
    SentOut(String),
    /// Transmitted on this device after it was received or forwarded.
    ForwardedOut(String),
    /// Taken by this tunnel device, and not seen sent after.
    Encapsulated(String),
    /// Queued to this device and not seen sent.
    HandedTo(String),
    /// Freed after normal use, with nothing else said.
    Consumed,
    Dropped(Dropped),
}

/// Where and why a packet was dropped: its freeing row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The freeing function's target index.
    pub func: u32,
    /// `enum skb_drop_reason`, when the function gives one.
    pub reason: Option<u32>,
    /// The return address into the function that freed it (0: unknown;
    /// fentry programs leave it to the stack).
    pub caller: u64,
    /// The row's stack id, when it recorded one.
    pub stack: Option<u32>,
}

#[derive(Debug)]
struct Life {
    fate: Fate,
    /// A drop or a free settled the fate.
    settled: bool,
    /// Received on a device, or forwarded: a transmission forwards it.
    received: bool,
    /// The IP protocol, once a row had the headers.
    protocol: Option<u8>,
}

impl Life {
    const NEW: Life = Life {
        fate: Fate::InFlight,
        settled: false,
        received: false,
        protocol: None,
    };
}

/// Every packet's fate so far.
#[derive(Debug, Default)]
pub struct Fates {
    steps: Vec<Step>,
    roles: Vec<Role>,
    /// Drop reason values that are not drops (`CONSUMED`, `NOT_DROPPED_YET`).
    not_drops: HashSet<u32>,
    lives: HashMap<u32, Life>,
}

impl Fates {
    /// `steps` and `roles` per target; `reasons`: the drop reasons' names.
    pub fn new(steps: Vec<Step>, roles: Vec<Role>, reasons: &HashMap<u32, String>) -> Self {
        let not_drops = reasons
            .iter()
            .filter(|(_, name)| matches!(name.as_str(), "CONSUMED" | "NOT_DROPPED_YET"))
            .map(|(value, _)| *value)
            .collect();
        Fates {
            steps,
            roles,
            not_drops,
            lives: HashMap::new(),
        }
    }

    /// Takes one event of `packet` (its function target `func`). Gives the
    /// packet's fate when this event frees the skb for good: its last row.
    pub fn observe(&mut self, packet: u32, event: &Event, func: u32) -> Option<&Fate> {
        let at = func as usize;
        let step = self.steps.get(at).copied().unwrap_or(Step::Pass);
        let role = self.roles.get(at).copied().unwrap_or(Role::Normal);
        let life = self.lives.entry(packet).or_insert(Life::NEW);
        if life.protocol.is_none() {
            life.protocol = summary::ip_protocol(event);
        }
        let returning = event.flags & EVENT_RETURN != 0 && event.flags & EVENT_CLONE == 0;
        if returning {
            return None;
        }
        if !life.settled {
            let reason = (event.flags & EVENT_DROP_REASON != 0).then_some(event.drop_reason);
            let drops = reason.is_none_or(|r| !self.not_drops.contains(&r));
            match step {
                Step::Drop if drops => {
                    life.fate = Fate::Dropped(Dropped {
                        func,
                        reason,
                        caller: event.caller,
                        stack: (event.flags & EVENT_STACK != 0).then_some(event.stack_id),
                    });
                    life.settled = true;
                }
                Step::Drop | Step::Consume => settle(life),
                _ => moved(life, step, event),
            }
        }
        if role != Role::Frees {
            return None;
        }
        settle(life);
        Some(&life.fate)
    }

    /// Whether the event of target `func` drops its packet: a freeing
    /// function of the kfree_skb family, with a drop reason that is one.
    pub fn drops(&self, event: &Event, func: u32) -> bool {
        let step = self.steps.get(func as usize).copied();
        let reason = (event.flags & EVENT_DROP_REASON != 0).then_some(event.drop_reason);
        step == Some(Step::Drop) && reason.is_none_or(|r| !self.not_drops.contains(&r))
    }

    /// Drops what is known of `packet` (whose fate was given): with json,
    /// each line is written as it comes, and only the count of each fate
    /// is kept.
    pub fn forget(&mut self, packet: u32) {
        self.lives.remove(&packet);
    }

    /// Every packet's fate, by packet number.
    pub fn into_map(self) -> HashMap<u32, Fate> {
        self.lives.into_iter().map(|(p, l)| (p, l.fate)).collect()
    }
}

/// Freed: what it last did, else consumed.
fn settle(life: &mut Life) {
    if !life.settled && life.fate == Fate::InFlight {
        life.fate = Fate::Consumed;
    }
    life.settled = true;
}

/// A step on the way: the latest one says where the packet is.
fn moved(life: &mut Life, step: Step, event: &Event) {
    let dev = || summary::device(event).unwrap_or("?").to_string();
    match step {
        Step::Receive => {
            life.received = true;
            life.fate = Fate::InFlight;
        }
        Step::Forward => life.received = true,
        Step::Queue => life.fate = Fate::HandedTo(dev()),
        Step::Xmit if life.received => life.fate = Fate::ForwardedOut(dev()),
        Step::Xmit => life.fate = Fate::SentOut(dev()),
        // The tunnel's device: the first row of the tunnel has it.
        Step::Encap if matches!(life.fate, Fate::Encapsulated(_)) => {}
        Step::Encap => life.fate = Fate::Encapsulated(dev()),
        Step::Deliver(socket) => life.fate = Fate::Delivered(socket),
        Step::Read if matches!(life.fate, Fate::Delivered(_)) => {}
        Step::Read => life.fate = Fate::Delivered(socket_for(life.protocol)),
        Step::Pass | Step::Drop | Step::Consume => {}
    }
}

/// The socket a reader of a packet of this IP protocol has.
fn socket_for(protocol: Option<u8>) -> Socket {
    match protocol {
        Some(17) => Socket::Udp,
        Some(6) => Socket::Tcp,
        Some(1 | 58) => Socket::Icmp,
        _ => Socket::Raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{
        roles::{roles, steps},
        Target, TargetKind,
    };

    const NO_SOCKET: u32 = 3;
    const CONSUMED: u32 = 1;

    fn targets(names: &[(&str, TargetKind)]) -> Vec<Target> {
        names
            .iter()
            .map(|(name, kind)| Target {
                kind: *kind,
                ..crate::discover::tests::candidate(name, "vmlinux").target
            })
            .collect()
    }

    fn fates(targets: &[Target]) -> Fates {
        let reasons = HashMap::from([
            (0, "NOT_DROPPED_YET".to_string()),
            (CONSUMED, "CONSUMED".to_string()),
            (NO_SOCKET, "NO_SOCKET".to_string()),
        ]);
        Fates::new(steps(targets), roles(targets), &reasons)
    }

    fn on(dev: &str) -> Event {
        let mut e = Event {
            network_header: 0xffff,
            ..Event::zeroed()
        };
        e.dev[..dev.len()].copy_from_slice(dev.as_bytes());
        e
    }

    fn udp(dev: &str) -> Event {
        let mut e = on(dev);
        e.network_header = 0;
        e.protocol = 0x0800u16.to_be();
        e.headers[0] = 0x45;
        e.headers[9] = 17;
        e
    }

    fn dropped(reason: u32, caller: u64) -> Event {
        Event {
            flags: EVENT_DROP_REASON,
            drop_reason: reason,
            caller,
            ..on("lo")
        }
    }

    use TargetKind::{Function, Tracepoint};

    /// The tracepoints of the host: lo out, lo in, then a free.
    fn tracepoints() -> Fates {
        fates(&targets(&[
            ("net_dev_queue", Tracepoint),
            ("net_dev_xmit", Tracepoint),
            ("netif_rx", Tracepoint),
            ("skb_copy_datagram_iovec", Tracepoint),
            ("kfree_skb", Tracepoint),
            ("consume_skb", Tracepoint),
        ]))
    }

    #[test]
    fn read_by_a_socket_then_consumed_is_delivered() {
        let mut f = tracepoints();
        for func in [0, 1, 2, 3] {
            assert_eq!(f.observe(1, &udp("lo"), func), None);
        }
        assert_eq!(
            f.observe(1, &udp("lo"), 5),
            Some(&Fate::Delivered(Socket::Udp))
        );
    }

    #[test]
    fn a_drop_names_its_reason_and_caller() {
        let mut f = tracepoints();
        f.observe(1, &udp("lo"), 1);
        f.observe(1, &udp("lo"), 2);
        let fate = f.observe(1, &dropped(NO_SOCKET, 0xffff_1234), 4).cloned();
        assert_eq!(
            fate,
            Some(Fate::Dropped(Dropped {
                func: 4,
                reason: Some(NO_SOCKET),
                caller: 0xffff_1234,
                stack: None,
            }))
        );
    }

    #[test]
    fn a_kfree_skb_with_reason_consumed_is_no_drop() {
        let mut f = tracepoints();
        f.observe(1, &udp("lo"), 2);
        assert_eq!(
            f.observe(1, &dropped(CONSUMED, 1), 4),
            Some(&Fate::Consumed)
        );
    }

    #[test]
    fn sent_until_received_again_and_in_flight_without_a_free() {
        let mut f = tracepoints();
        f.observe(1, &on("veth0"), 1);
        f.observe(2, &on("veth0"), 1);
        f.observe(2, &on("veth1"), 2);
        f.observe(3, &on("eth0"), 0);
        let all = f.into_map();
        assert_eq!(all[&1], Fate::SentOut("veth0".into()));
        assert_eq!(all[&2], Fate::InFlight);
        assert_eq!(all[&3], Fate::HandedTo("eth0".into()));
    }

    #[test]
    fn functions_see_forwarding_sockets_and_tunnels() {
        let t = targets(&[
            ("ip_rcv", Function),
            ("ip_forward", Function),
            ("dev_hard_start_xmit", Function),
            ("udp_queue_rcv_one_skb", Function),
            ("vxlan_xmit", Function),
            ("sk_skb_reason_drop", Function),
            ("kfree_skbmem", Function),
            ("icmp_echo", Function),
        ]);
        let mut f = fates(&t);
        f.observe(1, &on("eth0"), 0);
        f.observe(1, &on("eth0"), 1);
        f.observe(1, &on("eth1"), 2);
        assert_eq!(
            f.observe(1, &on("eth1"), 6),
            Some(&Fate::ForwardedOut("eth1".into()))
        );
        f.observe(2, &on("lo"), 3);
        f.observe(2, &dropped(CONSUMED, 0), 5);
        assert_eq!(
            f.observe(2, &on("lo"), 6),
            Some(&Fate::Delivered(Socket::Udp))
        );
        f.observe(3, &on("vxlan0"), 4);
        f.observe(4, &on("lo"), 7);
        // A drop after the socket took it: the drop wins.
        f.observe(5, &on("lo"), 3);
        f.observe(5, &dropped(NO_SOCKET, 9), 5);
        let returned = Event {
            flags: EVENT_RETURN,
            ..on("lo")
        };
        f.observe(5, &returned, 3);
        let all = f.into_map();
        assert_eq!(all[&3], Fate::Encapsulated("vxlan0".into()));
        assert_eq!(all[&4], Fate::Delivered(Socket::IcmpEcho));
        assert!(matches!(&all[&5], Fate::Dropped(d) if d.caller == 9));
    }

    #[test]
    fn a_free_without_anything_else_is_consumed() {
        let mut f = tracepoints();
        assert_eq!(f.observe(1, &on(""), 5), Some(&Fate::Consumed));
        // Plain kfree_skb, without a reason, drops.
        let t = targets(&[("kfree_skb", Function), ("kfree_skbmem", Function)]);
        let mut f = fates(&t);
        f.observe(1, &on(""), 0);
        assert!(matches!(f.observe(1, &on(""), 1), Some(Fate::Dropped(d)) if d.reason.is_none()));
    }
}
