//! Grouping events per packet.
//!
//! A packet is an skb pointer from its first traced call until the skb is
//! freed: the kernel reuses freed skbs, so the same pointer later names a new
//! packet ([`PacketIds`]). ipftrace2 merged such packets into one group.
//!
//! Storage for the aggregate table is one flat `Vec<Record>` in arrival
//! order; grouping happens once, at the end, by a stable sort on
//! `(packet, tstamp)`. Why not a `HashMap<packet, Vec<Record>>` as ipftrace2
//! had: `push` runs for every event while the trace is live, and a flat
//! vector makes it a fixed-size copy (amortised O(1), no allocation per
//! packet). Measured with 1M events, release build: 50k packets arriving in
//! bursts of 16 events from 4 CPUs, push 12-35 ms against 33-60 ms for a map
//! of vectors; the same events shuffled, 23-43 ms against 170-200 ms. The map
//! is quicker only at the end when packets are few and long, which runs once.
use std::collections::HashMap;

use ipft_common::Event;

use crate::{
    discover::{Target, TargetKind},
    stream::{Record, NONE},
    summary,
};

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
#[derive(Debug, Default)]
pub struct Details {
    /// Summary line per packet id.
    pub summaries: HashMap<u32, String>,
    /// Events kept for `--field` values, indexed by `Record::fields`.
    pub snapshots: Vec<Event>,
    /// Clone or copy → the packet it was made from (`--track`).
    pub parents: HashMap<u32, u32>,
}

/// Events collected during a trace, grouped per packet as they come: each
/// record links to the next record of its packet, so that Ctrl-C finds the
/// groups made, with nothing to sort but one entry per packet.
#[derive(Debug, Default)]
pub struct Packets {
    /// In arrival order.
    records: Vec<Record>,
    /// Per packet number (dense, from [`PacketIds`]): its chain of records.
    chains: Vec<Chain>,
    /// Chains of packet numbers far past the others (never from
    /// [`PacketIds`]), which would make `chains` huge.
    far: HashMap<u32, Chain>,
    details: Details,
}

/// How far past the known packet numbers `chains` grows.
const DENSE_SLACK: usize = 4096;

/// The chain of `packet`, made empty the first time.
fn chain_of<'c>(
    chains: &'c mut Vec<Chain>,
    far: &'c mut HashMap<u32, Chain>,
    packet: u32,
) -> &'c mut Chain {
    let index = packet as usize;
    if index >= chains.len() + DENSE_SLACK {
        return far.entry(packet).or_insert(Chain::EMPTY);
    }
    if index >= chains.len() {
        chains.resize(index + 1, Chain::EMPTY);
    }
    &mut chains[index]
}

/// One packet's records: indexes into [`Packets::records`].
#[derive(Clone, Copy, Debug)]
struct Chain {
    first: u32,
    last: u32,
    rows: u32,
    /// The earliest timestamp, which orders the groups.
    earliest: u64,
    /// Arrived in timestamp order (all but the odd late batch).
    sorted: bool,
}

impl Chain {
    const EMPTY: Chain = Chain {
        first: NONE,
        last: NONE,
        rows: 0,
        earliest: u64::MAX,
        sorted: true,
    };
}

impl Packets {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores one event. Amortised O(1): a vector push and a link.
    pub fn push(&mut self, mut record: Record) {
        let at = self.records.len() as u32;
        record.next = NONE;
        let chain = chain_of(&mut self.chains, &mut self.far, record.packet);
        if chain.first == NONE {
            chain.first = at;
        } else {
            let last = &mut self.records[chain.last as usize];
            last.next = at;
            chain.sorted &= last.tstamp <= record.tstamp;
        }
        chain.last = at;
        chain.rows += 1;
        chain.earliest = chain.earliest.min(record.tstamp);
        self.records.push(record);
    }

    /// Stores one event with what [`PacketIds`] found and, for `--field`,
    /// the snapshot its values come from.
    pub fn push_event(&mut self, mut record: Record, seen: Seen, snapshot: Option<&Event>) {
        if let Some(summary) = seen.summary {
            self.details.summaries.insert(seen.packet, summary);
        }
        if let Some(parent) = seen.parent {
            self.details.parents.insert(seen.packet, parent);
        }
        if let Some(event) = snapshot {
            record.fields = self.details.snapshots.len() as u32;
            self.details.snapshots.push(*event);
        }
        self.push(record);
    }

    /// Number of events stored.
    pub fn events(&self) -> usize {
        self.records.len()
    }

    /// The events grouped per packet, and their details. Within a group,
    /// rows are sorted by timestamp; equal timestamps keep arrival order.
    /// Groups are ordered by their first timestamp (ipftrace2 printed
    /// hash-table order), ties by packet number.
    pub fn into_groups(self) -> (Groups, Details) {
        let mut far: Vec<(u32, Chain)> = self.far.into_iter().collect();
        far.sort_unstable_by_key(|(packet, _)| *packet);
        let mut chains: Vec<Chain> = self.chains.into_iter().filter(|c| c.rows > 0).collect();
        chains.extend(far.into_iter().map(|(_, chain)| chain));
        // Stable: equal first timestamps stay in packet order.
        chains.sort_by_key(|c| c.earliest);
        let groups = Groups {
            records: self.records,
            chains,
        };
        (groups, self.details)
    }
}

/// Packets' records in table order, one group at a time.
pub trait GroupList: Sync {
    /// How many groups.
    fn len(&self) -> usize;
    /// How many rows group `i` has.
    fn rows(&self, i: usize) -> usize;
    /// Group `i`'s records, sorted by timestamp, into `out` (emptied first).
    fn group(&self, i: usize, out: &mut Vec<Record>);
}

/// The stored records, grouped: [`Packets::into_groups`].
pub struct Groups {
    records: Vec<Record>,
    /// In table order.
    chains: Vec<Chain>,
}

impl GroupList for Groups {
    fn len(&self) -> usize {
        self.chains.len()
    }

    fn rows(&self, i: usize) -> usize {
        self.chains[i].rows as usize
    }

    fn group(&self, i: usize, out: &mut Vec<Record>) {
        out.clear();
        let chain = &self.chains[i];
        let mut at = chain.first;
        while let Some(record) = self.records.get(at as usize) {
            out.push(*record);
            at = record.next;
        }
        if !chain.sorted {
            // Stable: equal timestamps keep arrival order.
            out.sort_by_key(|r| r.tstamp);
        }
    }
}

/// Groups given whole, each already in row order (the rendering tests).
#[cfg(test)]
impl GroupList for [Vec<Record>] {
    fn len(&self) -> usize {
        <[Vec<Record>]>::len(self)
    }

    fn rows(&self, i: usize) -> usize {
        self[i].len()
    }

    fn group(&self, i: usize, out: &mut Vec<Record>) {
        out.clear();
        out.extend_from_slice(&self[i]);
    }
}

/// Memory the aggregate table may use by default (`--max-events`).
const STORE_BYTES: u64 = 1 << 30;

/// How many events fit in [`STORE_BYTES`] at the end of a run, when storage
/// peaks: each event's record twice over (a vector grows by doubling), and
/// as much again for a share of its packet's chain and summary and the
/// rendering threads' buffers; with `--field` its snapshot too, with the
/// same growth slack.
pub fn default_max_events(with_fields: bool) -> u64 {
    let record = std::mem::size_of::<Record>() as u64;
    let snapshot = std::mem::size_of::<Event>() as u64;
    let per_event = 4 * record + if with_fields { 2 * snapshot } else { 0 };
    STORE_BYTES / per_event
}

/// A record with no drop reason and no field snapshot.
pub fn record(event: &Event, func: u32, packet: u32) -> Record {
    Record {
        skb: event.skb,
        tstamp: event.tstamp,
        func,
        packet,
        drop_reason: match event.flags & ipft_common::EVENT_DROP_REASON {
            0 => NONE,
            _ => event.drop_reason,
        },
        fields: NONE,
        next: NONE,
        // CPU numbers fit 16 bits (the kernel allows at most 8192).
        cpu: event.cpu as u16,
        is_return: event.flags & ipft_common::EVENT_RETURN != 0,
    }
}

/// Call depth of each row of a timestamp-sorted function_graph group.
///
/// An entry prints at the current depth, then goes one deeper; a return goes
/// one up first, then prints. The depth never drops below 0: a return without
/// its entry (tracing started mid-call, or a lost event) prints at depth 0.
pub fn depths(group: &[Record]) -> impl Iterator<Item = usize> + '_ {
    let mut depth = 0usize;
    group.iter().map(move |r| {
        if r.is_return {
            depth = depth.saturating_sub(1);
            depth
        } else {
            let printed = depth;
            depth += 1;
            printed
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(skb: u64, tstamp: u64, func: u32) -> Record {
        Record {
            skb,
            tstamp,
            func,
            packet: skb as u32,
            drop_reason: NONE,
            fields: NONE,
            next: NONE,
            cpu: 0,
            is_return: false,
        }
    }

    fn ret(skb: u64, tstamp: u64, func: u32) -> Record {
        Record {
            is_return: true,
            ..rec(skb, tstamp, func)
        }
    }

    /// Every group's records, in table order.
    fn all(groups: &Groups) -> Vec<Vec<Record>> {
        (0..groups.len())
            .map(|i| {
                let mut out = Vec::new();
                groups.group(i, &mut out);
                out
            })
            .collect()
    }

    /// (skb, tstamp, func) of every row, group by group.
    fn keys(groups: &Groups) -> Vec<Vec<(u64, u64, u32)>> {
        all(groups)
            .iter()
            .map(|g| g.iter().map(|r| (r.skb, r.tstamp, r.func)).collect())
            .collect()
    }

    #[test]
    fn default_cap_is_sized_for_a_gigabyte() {
        assert_eq!(std::mem::size_of::<Record>(), 40);
        assert_eq!(default_max_events(false), 6_710_886);
        assert_eq!(default_max_events(true), 2_485_513);
    }

    #[test]
    fn empty() {
        let packets = Packets::new();
        assert_eq!(packets.events(), 0);
        assert!(packets.into_groups().0.len() == 0);
    }

    #[test]
    fn counts() {
        let mut packets = Packets::new();
        for r in [rec(1, 10, 0), rec(1, 11, 1), rec(2, 5, 0), rec(1, 12, 2)] {
            packets.push(r);
        }
        assert_eq!(packets.events(), 4);
    }

    #[test]
    fn groups_ordered_by_first_timestamp() {
        let mut packets = Packets::new();
        // skb 0x30 has the highest pointer but the earliest event; skb 0x10
        // the lowest pointer but the latest first event.
        let input = [
            rec(0x10, 300, 0),
            rec(0x20, 200, 1),
            rec(0x30, 150, 2),
            rec(0x20, 100, 3),
            rec(0x10, 400, 4),
            rec(0x30, 50, 5),
        ];
        for r in input {
            packets.push(r);
        }
        assert_eq!(
            keys(&packets.into_groups().0),
            [
                vec![(0x30, 50, 5), (0x30, 150, 2)],
                vec![(0x20, 100, 3), (0x20, 200, 1)],
                vec![(0x10, 300, 0), (0x10, 400, 4)],
            ]
        );
    }

    #[test]
    fn far_packet_numbers_group_the_same() {
        // Packet numbers far apart (not from PacketIds) get the same groups.
        let mut packets = Packets::new();
        for r in [
            rec(1 << 30, 20, 0),
            rec(5, 10, 1),
            rec(1 << 30, 5, 2),
            rec(5, 30, 3),
        ] {
            packets.push(r);
        }
        assert!(packets.chains.len() < 10);
        assert_eq!(
            keys(&packets.into_groups().0),
            [
                vec![(1 << 30, 5, 2), (1 << 30, 20, 0)],
                vec![(5, 10, 1), (5, 30, 3)],
            ]
        );
    }

    #[test]
    fn equal_timestamps_keep_arrival_order() {
        let mut packets = Packets::new();
        for r in [rec(7, 20, 3), rec(7, 10, 9), rec(7, 20, 1), rec(7, 20, 2)] {
            packets.push(r);
        }
        assert_eq!(
            keys(&packets.into_groups().0),
            [vec![(7, 10, 9), (7, 20, 3), (7, 20, 1), (7, 20, 2)]]
        );
    }

    #[test]
    fn equal_timestamps_keep_arrival_order_many() {
        // Large enough that an unstable sort would reorder ties. func is the
        // arrival index, so within equal timestamps it must increase.
        let mut packets = Packets::new();
        for i in 0..1000u32 {
            packets.push(rec(u64::from(i % 3), u64::from(i % 5), i));
        }
        for group in all(&packets.into_groups().0) {
            let order: Vec<(u64, u32)> = group.iter().map(|r| (r.tstamp, r.func)).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted);
        }
    }

    fn target(name: &str, kind: TargetKind) -> Target {
        Target {
            name: name.into(),
            module: "vmlinux".into(),
            addr: 0,
            skb_pos: 0,
            nargs: 1,
            reason_pos: None,
            kind,
            btf_id: 0,
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

    #[test]
    fn equal_first_timestamps_order_by_skb() {
        let mut packets = Packets::new();
        for r in [rec(9, 10, 0), rec(3, 10, 1)] {
            packets.push(r);
        }
        assert_eq!(
            keys(&packets.into_groups().0),
            [vec![(3, 10, 1)], vec![(9, 10, 0)]]
        );
    }

    #[test]
    fn depth_nested() {
        // a() { b() { c() { } } d() { } }
        let group = [
            rec(1, 1, 0),
            rec(1, 2, 1),
            rec(1, 3, 2),
            ret(1, 4, 2),
            ret(1, 5, 1),
            rec(1, 6, 3),
            ret(1, 7, 3),
            ret(1, 8, 0),
        ];
        assert_eq!(depths(&group).collect::<Vec<_>>(), [0, 1, 2, 2, 1, 1, 1, 0]);
    }

    #[test]
    fn depth_floors_at_zero() {
        // Tracing started inside two calls: their returns print at 0.
        let group = [ret(1, 1, 0), ret(1, 2, 1), rec(1, 3, 2), ret(1, 4, 2)];
        assert_eq!(depths(&group).collect::<Vec<_>>(), [0, 0, 0, 0]);
    }
}
