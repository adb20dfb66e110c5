//! `-w`: which rows of a packet become pcapng frames. In ipft, not
//! ipft-output: it picks among the trace stage's frames and events.
//!
//! The programs send the bytes of every traced row (see
//! `ipft_common::CaptureRecord`); this decides which to write. By default:
//! a packet's first row with bytes, every row where what a frame would show
//! changed since the last one written (length, header layout, bytes, device
//! or namespace: encapsulation, decapsulation, NAT, a hop), and its last
//! row. The last row is known only when the packet ends (freed, or its skb
//! pointer starts another packet) or when the run does, so the latest
//! unwritten row of each live packet waits here until then.
use std::collections::HashMap;

use ipft_common::Event;
use regex::Regex;

use crate::{cli::CaptureAt, trace::stream::Frame};

/// One traced row that has bytes to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Its `func` is the target index.
    pub event: Event,
    pub packet: u32,
    pub frame: Frame,
}

impl Row {
    /// Bytes of the frame from its first byte to the end of the packet,
    /// linear and paged (never less than what was captured).
    pub fn frame_len(&self) -> u32 {
        let c = &self.frame.capture;
        let end = i64::from(self.event.len) + i64::from(c.data);
        let len = (end - i64::from(c.start)).clamp(0, i64::from(u32::MAX)) as u32;
        len.max(self.frame.bytes.len() as u32)
    }

    /// Whether a frame of `other` would show the same as this one: same
    /// place (namespace, device), link type, length, header layout, bytes.
    fn looks_like(&self, other: &Row) -> bool {
        let (a, b) = (&self.frame.capture, &other.frame.capture);
        let layout = |r: &Row| {
            let c = &r.frame.capture;
            (
                r.event.network_header.wrapping_sub(c.start),
                c.mac_header.wrapping_sub(c.start),
            )
        };
        (a.netns, a.ifindex, a.link) == (b.netns, b.ifindex, b.link)
            && self.frame_len() == other.frame_len()
            && layout(self) == layout(other)
            && self.frame.bytes == other.frame.bytes
    }
}

/// Which rows become frames (`--capture-at`).
pub enum Points {
    /// First, last, and where the frame changed.
    Changes,
    All,
    /// Rows of these targets (by index): the function name matched.
    Targets(Vec<bool>),
}

impl Points {
    /// From `--capture-at`, for targets named `names`.
    pub fn new<'a>(at: Option<&CaptureAt>, names: impl Iterator<Item = &'a str>) -> Points {
        match at {
            None => Points::Changes,
            Some(CaptureAt::All) => Points::All,
            Some(CaptureAt::Matching(re)) => Points::Targets(matching(re, names)),
        }
    }
}

fn matching<'a>(re: &Regex, names: impl Iterator<Item = &'a str>) -> Vec<bool> {
    names.map(|name| re.is_match(name)).collect()
}

/// A live packet's frames so far (default points only).
struct Life {
    packet: u32,
    /// The last row written, to compare the next with.
    shown: Option<Row>,
    /// The latest row not written: the last row if the packet ends now.
    pending: Option<Row>,
}

/// Picks the rows to write, packet by packet.
pub struct Picker {
    points: Points,
    /// Per skb pointer: its current packet.
    live: HashMap<u64, Life>,
}

impl Picker {
    pub fn new(points: Points) -> Picker {
        Picker {
            points,
            live: HashMap::new(),
        }
    }

    /// Takes one row of packet `packet` on `skb`, with its bytes if it has
    /// any to show; `ends` when the packet ends at this row. Appends the rows
    /// to write now to `out`, in order.
    pub fn take(
        &mut self,
        skb: u64,
        packet: u32,
        row: Option<Row>,
        ends: bool,
        out: &mut Vec<Row>,
    ) {
        match &self.points {
            Points::All => out.extend(row),
            Points::Targets(wanted) => {
                out.extend(row.filter(|r| wanted.get(r.event.func as usize) == Some(&true)))
            }
            Points::Changes => self.changes(skb, packet, row, ends, out),
        }
    }

    fn changes(&mut self, skb: u64, packet: u32, row: Option<Row>, ends: bool, out: &mut Vec<Row>) {
        let life = self.live.entry(skb).or_insert_with(|| Life::new(packet));
        if life.packet != packet {
            // The pointer names another packet now: the old one ended unseen.
            out.extend(life.pending.take());
            *life = Life::new(packet);
        }
        if let Some(row) = row {
            if life
                .shown
                .as_ref()
                .is_some_and(|shown| shown.looks_like(&row))
            {
                life.pending = Some(row);
            } else {
                life.pending = None;
                life.shown = Some(row.clone());
                out.push(row);
            }
        }
        if ends {
            out.extend(life.pending.take());
            self.live.remove(&skb);
        }
    }

    /// The run ended: the last rows of the packets still live, in time order.
    pub fn finish(&mut self, out: &mut Vec<Row>) {
        let start = out.len();
        out.extend(self.live.drain().filter_map(|(_, life)| life.pending));
        out[start..].sort_by_key(|r| (r.event.tstamp, r.packet));
    }
}

impl Life {
    fn new(packet: u32) -> Life {
        Life {
            packet,
            shown: None,
            pending: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_common::{Capture, LINK_ETHERNET, LINK_RAW};

    /// Row `func` at time `t` of packet 1 on skb 0x100: an Ethernet frame of
    /// `len` bytes on ifindex 1 whose first byte is `byte`.
    fn row(func: u32, t: u64, len: u32, byte: u8) -> Row {
        Row {
            event: Event {
                skb: 0x100,
                tstamp: t,
                func: func.into(),
                len,
                network_header: 78,
                ..Event::zeroed()
            },
            packet: 1,
            frame: Frame {
                capture: Capture {
                    netns: 4026531840,
                    ifindex: 1,
                    data: 64,
                    tail: 64 + len,
                    mac_header: 64,
                    start: 64,
                    link: LINK_ETHERNET,
                    captured: 1,
                },
                bytes: vec![byte],
            },
        }
    }

    /// The functions of the rows written after taking `rows` (each with
    /// whether it ends the packet), then finishing.
    fn picked(points: Points, rows: Vec<(Row, bool)>) -> Vec<u32> {
        let mut picker = Picker::new(points);
        let mut out = Vec::new();
        for (row, ends) in rows {
            let (skb, packet) = (row.event.skb, row.packet);
            picker.take(skb, packet, Some(row), ends, &mut out);
        }
        picker.finish(&mut out);
        out.iter().map(|r| r.event.func as u32).collect()
    }

    #[test]
    fn first_and_last_of_an_unchanged_packet() {
        let rows = (0..5).map(|f| (row(f, f.into(), 98, 0), f == 4)).collect();
        assert_eq!(picked(Points::Changes, rows), [0, 4]);
    }

    #[test]
    fn the_last_row_waits_for_the_end_of_the_run() {
        let rows = (0..3).map(|f| (row(f, f.into(), 98, 0), false)).collect();
        assert_eq!(picked(Points::Changes, rows), [0, 2]);
    }

    #[test]
    fn each_change_is_a_frame() {
        let mut encapsulated = row(2, 2, 148, 0);
        encapsulated.frame.capture.link = LINK_RAW;
        let mut moved = row(4, 4, 148, 0);
        moved.frame.capture.ifindex = 7;
        let mut rewritten = row(6, 6, 148, 9);
        rewritten.frame.capture = moved.frame.capture;
        let rows = vec![
            (row(0, 0, 98, 0), false),
            (row(1, 1, 98, 0), false),
            (encapsulated.clone(), false), // link type and length
            (
                Row {
                    event: Event {
                        func: 3,
                        ..encapsulated.event
                    },
                    ..encapsulated
                },
                false,
            ),
            (moved.clone(), false), // device
            (
                Row {
                    event: Event {
                        func: 5,
                        ..moved.event
                    },
                    ..moved
                },
                false,
            ),
            (rewritten, false),       // bytes (NAT)
            (row(7, 7, 98, 0), true), // back: the decapsulated packet
        ];
        assert_eq!(picked(Points::Changes, rows), [0, 2, 4, 6, 7]);
    }

    #[test]
    fn a_reused_pointer_ends_the_previous_packet() {
        let mut rows: Vec<(Row, bool)> = (0..3).map(|f| (row(f, f.into(), 98, 0), false)).collect();
        let mut next = row(3, 3, 98, 0);
        next.packet = 2;
        rows.push((next, false));
        // Packet 1's last row (2) is written when packet 2 appears.
        assert_eq!(picked(Points::Changes, rows), [0, 2, 3]);
    }

    #[test]
    fn a_row_without_bytes_can_end_the_packet() {
        let mut picker = Picker::new(Points::Changes);
        let mut out = Vec::new();
        for f in 0..3 {
            picker.take(0x100, 1, Some(row(f, f.into(), 98, 0)), false, &mut out);
        }
        // kfree_skbmem: the data is gone, the packet ends.
        picker.take(0x100, 1, None, true, &mut out);
        let funcs: Vec<u64> = out.iter().map(|r| r.event.func).collect();
        assert_eq!(funcs, [0, 2]);
        picker.finish(&mut out);
        assert_eq!(out.len(), 2, "nothing left over");
    }

    #[test]
    fn all_and_matching_points() {
        let rows = || (0..4).map(|f| (row(f, f.into(), 98, 0), false)).collect();
        assert_eq!(picked(Points::All, rows()), [0, 1, 2, 3]);
        let re = Regex::new("^ip_").unwrap();
        let names = ["net_dev_queue", "ip_rcv", "udp_rcv", "ip_output"];
        let points = Points::new(Some(&CaptureAt::Matching(re)), names.into_iter());
        assert_eq!(picked(points, rows()), [1, 3]);
    }

    #[test]
    fn frame_length_counts_from_the_first_byte() {
        let r = row(0, 0, 84, 0);
        assert_eq!(r.frame_len(), 84, "data at the MAC header");
        let mut pulled = r.clone();
        pulled.event.len = 64; // data moved 20 bytes past the IP header
        pulled.frame.capture.data = 64 + 14 + 20;
        assert_eq!(pulled.frame_len(), 98);
    }
}
