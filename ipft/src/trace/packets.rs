//! Naming packets: a number per skb life. The kernel reuses freed skbs, so
//! the same pointer later names a new packet (ipftrace2 merged them); a
//! clone (`--track`) is a packet of its own that names its parent. Each
//! packet's summary line is read from the first event that has headers.
use std::collections::HashMap;

use ipft_common::Event;

use super::summary;
use crate::discover::roles::Role;

/// Names packets: a number per skb life, and its summary line once known.
#[derive(Debug, Default)]
pub struct PacketIds {
    live: HashMap<u64, Life>,
    roles: Vec<Role>,
    next: u32,
}

#[derive(Debug)]
struct Life {
    packet: u32,
    freed: bool,
    described: bool,
}

/// What [`PacketIds::observe`] learnt from one event.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub packet: u32,
    /// The packet's summary, the first time one can be read.
    pub summary: Option<String>,
    /// For a clone or copy (`--track`): the packet it was made from.
    pub parent: Option<u32>,
}

impl PacketIds {
    pub fn new(roles: Vec<Role>) -> Self {
        PacketIds {
            live: HashMap::new(),
            roles,
            next: 1,
        }
    }

    /// Assigns the event (whose function is target `func`) to a packet.
    pub fn observe(&mut self, event: &Event, func: u32) -> Seen {
        let role = self
            .roles
            .get(func as usize)
            .copied()
            .unwrap_or(Role::Normal);
        let clone = event.flags & ipft_common::EVENT_CLONE != 0;
        let parent = match clone {
            true => self.live.get(&event.parent).map(|life| life.packet),
            false => None,
        };
        let reused = clone && self.live.contains_key(&event.skb);
        let next = &mut self.next;
        let mut fresh = || {
            let packet = *next;
            *next += 1;
            Life {
                packet,
                freed: false,
                described: false,
            }
        };
        let life = self.live.entry(event.skb).or_insert_with(&mut fresh);
        // A clone is a new packet even where the pointer was seen before
        // (freed and reused); so is a freed pointer seen again, except for
        // the returns of calls the packet was in (function_graph).
        let returning = event.flags & ipft_common::EVENT_RETURN != 0 && !clone;
        if (life.freed && role == Role::Normal && !returning) || reused {
            *life = fresh();
        }
        if role == Role::Frees {
            life.freed = true;
        }
        // A return carries no snapshot: the skb may be gone by then.
        let summary = match life.described || returning {
            true => None,
            false => summary::describe(event),
        };
        life.described |= summary.is_some();
        Seen {
            packet: life.packet,
            summary,
            parent,
        }
    }

    /// Packets named so far.
    pub fn count(&self) -> usize {
        (self.next - 1) as usize
    }
}

/// Everything a packet group shows besides its rows.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{roles::roles, Target, TargetKind};

    fn target(name: &str, kind: TargetKind) -> Target {
        Target {
            kind,
            ..crate::discover::tests::candidate(name, "vmlinux").target
        }
    }

    /// The packet of each call on skb 0x100, calling targets `funcs` in turn.
    fn packets_of(ids: &mut PacketIds, funcs: &[u32]) -> Vec<u32> {
        funcs
            .iter()
            .map(|&f| ids.observe(&event(0x100), f).packet)
            .collect()
    }

    fn event(skb: u64) -> Event {
        Event {
            skb,
            network_header: 0xffff,
            ..Event::zeroed()
        }
    }

    #[test]
    fn a_reused_skb_is_a_new_packet() {
        use TargetKind::Function;
        let targets = [
            "ip_rcv",
            "consume_skb",
            "skb_release_data",
            "kfree_skbmem",
            "ip_output",
        ]
        .map(|n| target(n, Function));
        let mut ids = PacketIds::new(roles(&targets));
        // ip_rcv, consume_skb, skb_release_data, kfree_skbmem, then the
        // pointer comes back in ip_output: a second packet.
        let packets = packets_of(&mut ids, &[0, 1, 2, 3, 4]);
        assert_eq!(packets, [1, 1, 1, 1, 2]);
        assert_eq!(ids.observe(&event(0x200), 0).packet, 3);
        assert_eq!(ids.count(), 3);
    }

    #[test]
    fn without_kfree_skbmem_the_first_free_ends_the_packet() {
        use TargetKind::Function;
        let targets = ["ip_rcv", "consume_skb", "skb_release_data"].map(|n| target(n, Function));
        let mut ids = PacketIds::new(roles(&targets));
        let packets = packets_of(&mut ids, &[0, 1, 2, 0]);
        assert_eq!(packets, [1, 1, 1, 2]);
    }

    #[test]
    fn returns_after_the_free_stay_with_their_packet() {
        use TargetKind::Function;
        let targets = ["ip_rcv", "kfree_skbmem"].map(|n| target(n, Function));
        let mut ids = PacketIds::new(roles(&targets));
        let ret = |skb| Event {
            flags: ipft_common::EVENT_RETURN,
            ..event(skb)
        };
        // ip_rcv() { kfree_skbmem() { } }: the returns come after the free.
        let packets = [
            ids.observe(&event(0x100), 0).packet,
            ids.observe(&event(0x100), 1).packet,
            ids.observe(&ret(0x100), 1).packet,
            ids.observe(&ret(0x100), 0).packet,
            ids.observe(&event(0x100), 0).packet,
        ];
        assert_eq!(packets, [1, 1, 1, 1, 2]);
    }

    #[test]
    fn tracepoint_frees_end_packets() {
        let targets = [
            target("net_dev_queue", TargetKind::Tracepoint),
            target("consume_skb", TargetKind::Tracepoint),
        ];
        assert_eq!(roles(&targets), [Role::Normal, Role::Frees]);
        let mut ids = PacketIds::new(roles(&targets));
        let packets = packets_of(&mut ids, &[0, 1, 0, 1]);
        assert_eq!(packets, [1, 1, 2, 2]);
    }

    #[test]
    fn a_clone_is_a_packet_of_its_own_that_names_its_parent() {
        let targets = [
            target("ip_rcv", TargetKind::Function),
            target("skb_clone", TargetKind::Function),
        ];
        let mut ids = PacketIds::new(roles(&targets));
        assert_eq!(ids.observe(&event(0x100), 0).packet, 1);
        let clone = Event {
            parent: 0x100,
            flags: ipft_common::EVENT_CLONE,
            ..event(0x200)
        };
        let seen = ids.observe(&clone, 1);
        assert_eq!((seen.packet, seen.parent), (2, Some(1)));
        assert_eq!(
            ids.observe(&event(0x200), 0).packet,
            2,
            "the clone's later calls"
        );
        assert_eq!(
            ids.observe(&event(0x100), 0).packet,
            1,
            "the original goes on"
        );
    }

    #[test]
    fn summary_comes_once_per_packet() {
        let mut ids = PacketIds::new(vec![Role::Normal]);
        let mut e = event(1);
        e.network_header = 14;
        e.protocol = 0x0800u16.to_be();
        e.headers[..20].copy_from_slice(&[
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ]);
        assert_eq!(ids.observe(&event(1), 0).summary, None, "no header yet");
        assert!(ids
            .observe(&e, 0)
            .summary
            .unwrap()
            .starts_with("ICMP 127.0.0.1 -> 127.0.0.1"));
        assert_eq!(ids.observe(&e, 0).summary, None, "already described");
    }
}
