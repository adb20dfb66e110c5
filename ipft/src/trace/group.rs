//! Grouping events per packet, as they arrive.
//!
//! Each stored [`Record`] links to the next record of its packet, so that
//! Ctrl-C finds the groups made, with nothing to sort but one entry per
//! packet ([`Packets::into_groups`]). Records live in one flat vector in
//! arrival order: storing an event is a fixed-size copy and a link, with no
//! allocation per packet, while the trace is live.
use std::collections::HashMap;

use ipft_common::Event;

use super::packets::Seen;

/// One event as stored for the aggregate table: 48 bytes, fixed size. The
/// function is an index into the run's target list, not a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The `struct sk_buff *` pointer.
    pub skb: u64,
    /// Kernel monotonic time in nanoseconds (`bpf_ktime_get_ns`).
    pub tstamp: u64,
    /// Index into the `&[Target]` of this run.
    pub func: u32,
    /// Packet number, unique within the run (see `group::PacketIds`).
    pub packet: u32,
    /// `enum skb_drop_reason` value, or [`NONE`].
    pub drop_reason: u32,
    /// Index of this row's `--field` snapshot, or [`NONE`].
    pub fields: u32,
    /// The next record of the same packet (`group::Packets`), or [`NONE`].
    pub next: u32,
    /// A return's value, the whole register (function_graph): the
    /// target's `returns` says how to read it.
    pub retval: u64,
    pub cpu: u16,
    /// A function return (function_graph tracer), not an entry.
    pub is_return: bool,
}

/// "Absent" for [`Record`]'s optional indexes and values.
pub const NONE: u32 = u32::MAX;

/// Where a row was called from, named (`report::sites`): its caller (a
/// dropping row's) and its kernel stack (`--stack`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Located {
    pub caller: Option<String>,
    /// Frames from the traced call outwards; empty without a stack.
    pub stack: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Details {
    /// Summary line per packet id.
    pub summaries: HashMap<u32, String>,
    /// Events kept for `--field` values, indexed by `Record::fields`.
    pub snapshots: Vec<Event>,
    /// Clone or copy → the packet it was made from (`--track`).
    pub parents: HashMap<u32, u32>,
    /// Callers and stacks, by the row's `Record::fields` index.
    pub located: HashMap<u32, Located>,
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
    /// the snapshot its values come from; a row with a caller or a stack
    /// keeps its snapshot too, and where it was called from.
    pub fn push_event(
        &mut self,
        mut record: Record,
        seen: Seen,
        snapshot: Option<&Event>,
        located: Option<Located>,
    ) {
        if let Some(summary) = seen.summary {
            self.details.summaries.insert(seen.packet, summary);
        }
        if let Some(parent) = seen.parent {
            self.details.parents.insert(seen.packet, parent);
        }
        if let Some(event) = snapshot {
            record.fields = self.details.snapshots.len() as u32;
            self.details.snapshots.push(*event);
            if let Some(located) = located {
                self.details.located.insert(record.fields, located);
            }
        }
        self.push(record);
    }

    /// Number of events stored.
    /// Whether any event of `packet` is stored.
    pub fn holds(&self, packet: u32) -> bool {
        let chain = match self.chains.get(packet as usize) {
            Some(chain) => Some(chain),
            None => self.far.get(&packet),
        };
        chain.is_some_and(|c| c.rows > 0)
    }

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
        retval: event.retval,
        // CPU numbers fit 16 bits (the kernel allows at most 8192).
        cpu: event.cpu as u16,
        is_return: event.flags & ipft_common::EVENT_RETURN != 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of packet `skb` (its number too), without extras.
    pub fn record_at(skb: u64, tstamp: u64, func: u32, cpu: u16, is_return: bool) -> Record {
        Record {
            skb,
            tstamp,
            func,
            packet: skb as u32,
            drop_reason: NONE,
            fields: NONE,
            next: NONE,
            retval: 0,
            cpu,
            is_return,
        }
    }

    fn rec(skb: u64, tstamp: u64, func: u32) -> Record {
        record_at(skb, tstamp, func, 0, false)
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
        assert_eq!(std::mem::size_of::<Record>(), 48);
        assert_eq!(default_max_events(false), 5_592_405);
        assert_eq!(default_max_events(true), 2_097_152);
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
}
