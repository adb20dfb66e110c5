//! Grouping events per packet for the aggregate table.
//!
//! Storage is one flat `Vec<Record>` in arrival order; grouping happens once,
//! at the end, by a stable sort on `(skb, tstamp)`. Why not a
//! `HashMap<skb, Vec<Record>>` as ipftrace2 had: `push` runs for every event
//! while the trace is live, and a flat vector makes it a 32-byte copy
//! (amortised O(1), no allocation per packet, no per-packet vector headers and
//! slack). Measured with 1M events, release build, on the dev host (this
//! code against a map of vectors): 50k packets arriving in bursts of 16 events
//! from 4 CPUs, push 12-35 ms against 33-60 ms; the same events shuffled,
//! 23-43 ms against 170-200 ms; 500k packets of 2 events, 60-90 ms against
//! 180-230 ms. The map is quicker at the end when packets are few and long
//! (grouping 14-21 ms against 56-82 ms; its groups are already formed), but
//! that runs once, after the trace stopped; with 500k packets it is slower
//! there too (180-240 ms against 67-80 ms).
//!
//! The packet count is kept live with a set of skb pointers: without it,
//! `packets()` would have to sort. Events of one packet mostly arrive in a
//! burst, so a "same skb as the previous event" check skips most set lookups.

use std::collections::HashSet;

use crate::stream::Record;

/// Events collected during a trace, grouped per packet (skb pointer) on demand.
#[derive(Debug, Default)]
pub struct Packets {
    records: Vec<Record>,
    /// Distinct skb pointers seen so far.
    skbs: HashSet<u64>,
    /// The skb of the previous event, to skip the set lookup in a burst.
    last_skb: Option<u64>,
}

impl Packets {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores one event. Amortised O(1): a vector push and, when the packet
    /// differs from the previous event's, a set insert.
    pub fn push(&mut self, record: Record) {
        if self.last_skb != Some(record.skb) {
            self.skbs.insert(record.skb);
            self.last_skb = Some(record.skb);
        }
        self.records.push(record);
    }

    /// Number of events stored.
    pub fn events(&self) -> usize {
        self.records.len()
    }

    /// Number of distinct packets (skb pointers) stored.
    pub fn packets(&self) -> usize {
        self.skbs.len()
    }

    /// The events grouped per packet. Within a group, rows are sorted by
    /// timestamp; equal timestamps keep arrival order. Groups are ordered by
    /// their first timestamp (ipftrace2 printed hash-table order), ties by skb
    /// pointer so that the output is deterministic.
    pub fn into_groups(self) -> Vec<Vec<Record>> {
        let mut records = self.records;
        // Stable: equal (skb, tstamp) keys keep arrival order.
        records.sort_by_key(|r| (r.skb, r.tstamp));
        let mut groups: Vec<Vec<Record>> = records
            .chunk_by(|a, b| a.skb == b.skb)
            .map(<[Record]>::to_vec)
            .collect();
        // Stable too, so that equal first timestamps stay in skb order.
        groups.sort_by_key(|g| g[0].tstamp);
        groups
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

    /// (skb, tstamp, func) of every row, group by group.
    fn keys(groups: &[Vec<Record>]) -> Vec<Vec<(u64, u64, u32)>> {
        groups
            .iter()
            .map(|g| g.iter().map(|r| (r.skb, r.tstamp, r.func)).collect())
            .collect()
    }

    #[test]
    fn empty() {
        let packets = Packets::new();
        assert_eq!(packets.events(), 0);
        assert_eq!(packets.packets(), 0);
        assert!(packets.into_groups().is_empty());
    }

    #[test]
    fn counts() {
        let mut packets = Packets::new();
        for r in [rec(1, 10, 0), rec(1, 11, 1), rec(2, 5, 0), rec(1, 12, 2)] {
            packets.push(r);
        }
        assert_eq!(packets.events(), 4);
        assert_eq!(packets.packets(), 2);
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
            keys(&packets.into_groups()),
            [
                vec![(0x30, 50, 5), (0x30, 150, 2)],
                vec![(0x20, 100, 3), (0x20, 200, 1)],
                vec![(0x10, 300, 0), (0x10, 400, 4)],
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
            keys(&packets.into_groups()),
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
        for group in packets.into_groups() {
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
            keys(&packets.into_groups()),
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
