//! Following the packets: each event named to its packet ([`PacketIds`]),
//! how the packet ends ([`Fates`]), and, for the table, the event stored
//! grouped per packet ([`Packets`]) up to `--max-events`. Report renders
//! what this gives and decides nothing about packets.
use std::collections::HashMap;

use ipft_common::Event;

use super::{
    fate::{Fate, Fates},
    group::{self, Details, Groups, Located, Packets, Record},
    packets::{PacketIds, Seen},
};
use crate::discover::{
    roles::{self, Role},
    Target,
};

/// One event, followed.
pub struct Followed {
    /// Its packet, with the packet's summary and parent when first known.
    pub seen: Seen,
    /// The event as the table stores it.
    pub record: Record,
    /// The packet's fate, when this event freed it for good.
    pub ended: Option<Fate>,
    /// This row drops its packet (its caller is named).
    pub drops: bool,
}

/// Follows the events of one run's targets.
pub struct Follower {
    ids: PacketIds,
    fates: Fates,
    packets: Packets,
    /// The table stores no more events than this (`--max-events`).
    max_events: u64,
}

impl Follower {
    /// For `targets`, whose [`Role`]s are `roles`; `reasons` names the
    /// drop reasons. `max_events` defaults by whether `--field` snapshots
    /// are kept (`with_fields`).
    pub fn new(
        targets: &[Target],
        roles: Vec<Role>,
        reasons: &HashMap<u32, String>,
        max_events: Option<u64>,
        with_fields: bool,
    ) -> Self {
        Follower {
            fates: Fates::new(roles::steps(targets), roles.clone(), reasons),
            ids: PacketIds::new(roles),
            packets: Packets::new(),
            max_events: max_events.unwrap_or_else(|| group::default_max_events(with_fields)),
        }
    }

    /// Names the event (whose `func` is the target index) to its packet
    /// and follows the packet's fate.
    pub fn follow(&mut self, event: &Event) -> Followed {
        let func = event.func as u32;
        let seen = self.ids.observe(event, func);
        let ended = self.fates.observe(seen.packet, event, func).cloned();
        Followed {
            record: group::record(event, func, seen.packet),
            drops: self.fates.drops(event, func),
            ended,
            seen,
        }
    }

    /// Stores the event for the table, with its `--field` snapshot and
    /// where it was called from; `false` when `--max-events` are stored.
    pub fn store(
        &mut self,
        followed: Followed,
        snapshot: Option<&Event>,
        located: Option<Located>,
    ) -> bool {
        if self.packets.events() as u64 >= self.max_events {
            return false;
        }
        self.packets
            .push_event(followed.record, followed.seen, snapshot, located);
        true
    }

    /// Whether the table holds an event of `packet`.
    pub fn holds(&self, packet: u32) -> bool {
        self.packets.holds(packet)
    }

    /// Forgets `packet`, whose fate was given and counted.
    pub fn forget(&mut self, packet: u32) {
        self.fates.forget(packet);
    }

    /// Events stored for the table, and packets named.
    pub fn stored(&self) -> (usize, usize) {
        (self.packets.events(), self.ids.count())
    }

    /// The fates of the packets not forgotten, by packet number: how they
    /// ended, or what they last did.
    pub fn take_fates(&mut self) -> HashMap<u32, Fate> {
        std::mem::take(&mut self.fates).into_map()
    }

    /// The events stored, grouped per packet, with their details.
    pub fn into_groups(self) -> (Groups, Details) {
        self.packets.into_groups()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{roles::roles, TargetKind};

    fn tracepoints() -> Vec<Target> {
        ["net_dev_queue", "kfree_skb"]
            .iter()
            .map(|name| Target {
                kind: TargetKind::Tracepoint,
                ..crate::discover::tests::candidate(name, "vmlinux").target
            })
            .collect()
    }

    fn event(skb: u64, func: u64, flags: u32) -> Event {
        Event {
            skb,
            func,
            flags,
            drop_reason: 3,
            ..Event::zeroed()
        }
    }

    #[test]
    fn events_are_named_to_packets_until_freed_and_stored_up_to_the_limit() {
        let targets = tracepoints();
        let reasons = HashMap::from([(3, "NO_SOCKET".to_string())]);
        let mut follower = Follower::new(&targets, roles(&targets), &reasons, Some(2), false);
        let first = follower.follow(&event(0xa, 0, 0));
        let other = follower.follow(&event(0xb, 0, 0));
        assert_ne!(first.seen.packet, other.seen.packet);
        assert!(first.ended.is_none() && !first.drops);
        let packet = first.seen.packet;
        assert!(follower.store(first, None, None));
        assert!(follower.store(other, None, None));
        let freed = follower.follow(&event(0xa, 1, ipft_common::EVENT_DROP_REASON));
        assert_eq!(freed.seen.packet, packet);
        assert!(freed.drops);
        assert!(matches!(freed.ended, Some(Fate::Dropped(_))));
        assert!(!follower.store(freed, None, None), "past --max-events");
        assert!(follower.holds(packet));
        assert_eq!(follower.stored(), (2, 2));
        follower.forget(packet);
        assert_eq!(follower.take_fates().len(), 1, "only the other packet");
        let (groups, _) = follower.into_groups();
        assert_eq!(group::GroupList::len(&groups), 2);
    }
}
