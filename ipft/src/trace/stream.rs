//! Streaming events from the kernel: the `EVENTS` perf event array, read on
//! every CPU with tokio, decoded into [`Event`]s whose function is already
//! the index of its target, in batches; with `-w`, each with the [`Frame`]
//! its record carried.
use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd},
    task::Poll,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use aya::{maps::Map, util::online_cpus};

use crate::attach::programs::Maps;
use ipft_common::{Capture, Event, CAPTURE_SIZE, EVENT_CAPTURE, EVENT_SIZE};
use tokio::io::{unix::AsyncFd, Interest};

use crate::sys::{
    bpf,
    perf::{self, PerfRing},
};

/// Decodes one perf sample; `None` when it is too short to be an [`Event`].
/// Total: any byte sequence decodes or is rejected, never a panic.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    let bytes = bytes.get(..EVENT_SIZE)?;
    // SAFETY: `Event` is repr(C) integers and byte arrays: every bit pattern
    // is a valid value, and the slice holds exactly its size.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// `-w`: the packet as one record saw it: where, and its first bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub capture: Capture,
    /// `capture.captured` bytes from `capture.start`.
    pub bytes: Vec<u8>,
}

/// Decodes one perf sample and, when it carries one ([`EVENT_CAPTURE`]),
/// its frame; `None` when it is too short for what it says it holds.
pub fn decode_captured(bytes: &[u8]) -> Option<(Event, Option<Frame>)> {
    let event = decode(bytes)?;
    if event.flags & EVENT_CAPTURE == 0 {
        return Some((event, None));
    }
    let header = bytes.get(EVENT_SIZE..EVENT_SIZE + CAPTURE_SIZE)?;
    // SAFETY: `Capture` is repr(C) integers: every bit pattern is valid,
    // and the slice holds exactly its size.
    let capture = unsafe { std::ptr::read_unaligned(header.as_ptr().cast::<Capture>()) };
    let start = EVENT_SIZE + CAPTURE_SIZE;
    let data = bytes.get(start..start + usize::from(capture.captured))?;
    let bytes = data.to_vec();
    Some((event, Some(Frame { capture, bytes })))
}

/// What one wake-up produced. Handing events over per wake-up keeps the
/// bookkeeping per batch, not per event.
#[derive(Debug, Default)]
pub struct Batch {
    /// Decoded events whose `func` is already the target index.
    pub events: Vec<Event>,
    /// `-w`: each event's frame (`None` for a return, which carries none);
    /// empty without `-w`.
    pub frames: Vec<Option<Frame>>,
    /// Samples the kernel dropped because the buffer was full.
    pub lost: u64,
    /// Samples that did not decode, or named a function we did not attach.
    pub bad: u64,
}

/// Every CPU's perf ring, read from one task: no channel, no per-event
/// hand-off, and a final synchronous drain when tracing stops.
pub struct Stream {
    rings: Vec<AsyncFd<PerfRing>>,
    index: HashMap<u64, u32>,
    /// `-w`: keep each event's frame.
    frames: bool,
    /// Drains the rings periodically: the kernel wakes the reader only every
    /// `wakeup_events` events, so a trickle would otherwise wait.
    tick: tokio::time::Interval,
}

/// How often rings are drained when the kernel has not woken the reader.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// The perf buffer pages per CPU when the user does not say: 64 MiB shared
/// by the CPUs, at least 1 and at most 8 MiB each. A burst lands on the few
/// CPUs that send and receive it, so each needs room for most of it; the
/// total stays bounded on machines with many CPUs.
pub fn default_page_count(cpus: usize, page: usize) -> usize {
    const TOTAL: usize = 64 << 20;
    let per_cpu = (TOTAL / cpus.max(1)).clamp(1 << 20, 8 << 20);
    1 << (per_cpu / page.max(1)).max(1).ilog2()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Opens a ring per online CPU and plugs it into the `EVENTS` map. Done
/// while start-up waits for other work, before anything is attached: the
/// first events then have somewhere to go.
pub fn open_rings(
    ebpf: &Maps,
    page_count: Option<usize>,
    wakeup_events: u32,
) -> Result<Vec<PerfRing>> {
    let Some(Map::PerfEventArray(map)) = ebpf.map(ipft_common::maps::EVENTS.name) else {
        bail!("the eBPF object has no EVENTS perf event array");
    };
    let cpus = online_cpus()
        .map_err(|(_, e)| e)
        .context("cannot list online CPUs")?;
    let mut rings = Vec::with_capacity(cpus.len());
    let page_count = page_count.unwrap_or_else(|| default_page_count(cpus.len(), page_size()));
    for cpu in cpus {
        let ring = PerfRing::open(cpu, page_count, wakeup_events)
            .with_context(|| format!("cannot open the perf buffer of CPU {cpu}"))?;
        let fd = ring.as_raw_fd();
        bpf::map_update_elem(map.fd().as_fd(), &cpu.to_ne_bytes(), &fd.to_ne_bytes())
            .with_context(|| format!("cannot connect the perf buffer of CPU {cpu}"))?;
        rings.push(ring);
    }
    Ok(rings)
}

impl Stream {
    /// Reads `rings` (from [`open_rings`]) on the runtime; `index` maps an
    /// event's function identity to its target; `frames` keeps the frames
    /// of `-w`.
    pub fn new(rings: Vec<PerfRing>, index: HashMap<u64, u32>, frames: bool) -> Result<Self> {
        let rings = rings
            .into_iter()
            .map(|ring| {
                // SAFETY: the ring owns its perf event fd and keeps it open,
                // the same fd, until the AsyncFd (which owns the ring) is
                // dropped.
                unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                    .map_err(io::Error::from)
                    .context("cannot poll a perf buffer")
            })
            .collect::<Result<_>>()?;
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Stream {
            rings,
            index,
            frames,
            tick,
        })
    }

    /// Waits until some ring has data (woken, or at the periodic drain), and
    /// returns what it had.
    pub async fn next(&mut self) -> Batch {
        loop {
            tokio::select! {
                () = any_ready(&mut self.rings) => {},
                _ = self.tick.tick() => {},
            };
            let batch = self.drain_all();
            if !batch.is_empty() {
                return batch;
            }
        }
    }

    /// Reads whatever every ring holds, without waiting, in timestamp order.
    /// Also called once tracing stops so events already in the kernel are
    /// not lost.
    ///
    /// All rings at once, sorted: a packet can move between CPUs, and its
    /// events must reach packet naming in the order they happened (a freed
    /// skb reused on another CPU would otherwise join the old packet).
    pub fn drain_all(&mut self) -> Batch {
        let mut all = Batch::default();
        for ring in &mut self.rings {
            drain(ring.get_mut(), &self.index, self.frames, &mut all);
        }
        all.sort();
        all
    }
}

/// Waits until the kernel marks some ring readable, and clears that mark
/// (the caller drains every ring next).
async fn any_ready(rings: &mut [AsyncFd<PerfRing>]) {
    std::future::poll_fn(|cx| {
        let mut ready = false;
        for ring in rings.iter_mut() {
            if let Poll::Ready(Ok(mut guard)) = ring.poll_read_ready_mut(cx) {
                guard.clear_ready();
                ready = true;
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Events the programs could not send because a perf buffer was full, as
/// they counted them. Read at the end: the kernel's own lost-records reach
/// userspace only when a later event fits, so they miss a loss at the end of
/// a burst.
pub fn lost_in_kernel(ebpf: &Maps) -> u64 {
    let Some(map) = ebpf.map(ipft_common::maps::LOST.name) else {
        return 0;
    };
    let Ok(array) = aya::maps::PerCpuArray::<_, u64>::try_from(map) else {
        return 0;
    };
    array
        .get(&0, 0)
        .map(|per_cpu| per_cpu.iter().sum())
        .unwrap_or(0)
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.lost == 0 && self.bad == 0
    }

    /// In timestamp order, frames beside their events. Each ring is in order
    /// already: the sort merges runs.
    fn sort(&mut self) {
        if self.frames.is_empty() {
            self.events.sort_by_key(|e| e.tstamp);
            return;
        }
        let mut both: Vec<(Event, Option<Frame>)> =
            self.events.drain(..).zip(self.frames.drain(..)).collect();
        both.sort_by_key(|(e, _)| e.tstamp);
        (self.events, self.frames) = both.into_iter().unzip();
    }

    /// Keeps the first `n` events (and their frames).
    pub fn truncate(&mut self, n: usize) {
        self.events.truncate(n);
        self.frames.truncate(n);
    }
}

fn drain(ring: &mut PerfRing, index: &HashMap<u64, u32>, frames: bool, batch: &mut Batch) {
    ring.read(|record| take(record, index, frames, batch));
}

/// Keeps one record's event (and with `frames` its frame), or counts it as
/// lost or bad.
fn take(record: perf::Record<'_>, index: &HashMap<u64, u32>, frames: bool, batch: &mut Batch) {
    match record {
        perf::Record::Sample(bytes) => {
            let decoded = decode_captured(bytes);
            match decoded.and_then(|(e, frame)| Some((resolve(e, index)?, frame))) {
                Some((event, frame)) => {
                    batch.events.push(event);
                    if frames {
                        batch.frames.push(frame);
                    }
                }
                None => batch.bad += 1,
            }
        }
        perf::Record::Lost(count) => batch.lost += count,
        perf::Record::Corrupt => batch.bad += 1,
        perf::Record::Other => {}
    }
}

/// Replaces an event's function identity (address or tracepoint id) by its
/// target index; `None` for a function we did not attach.
pub fn resolve(mut event: Event, index: &HashMap<u64, u32>) -> Option<Event> {
    event.func = u64::from(*index.get(&event.func)?);
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;

    fn bytes(e: &Event) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) value of integers.
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    #[test]
    fn default_buffer_is_64_mib_shared_within_bounds() {
        let page = 4096;
        assert_eq!(default_page_count(1, page), 2048); // 8 MiB: the cap
        assert_eq!(default_page_count(2, page), 2048);
        assert_eq!(default_page_count(16, page), 1024); // 4 MiB
        assert_eq!(default_page_count(24, page), 512); // 2.67 MiB, rounded down
        assert_eq!(default_page_count(256, page), 256); // 1 MiB: the floor
        assert_eq!(default_page_count(2, 65536), 128);
        for cpus in 1..300 {
            assert!(default_page_count(cpus, page).is_power_of_two());
        }
    }

    #[test]
    fn decodes_what_the_programs_write() {
        let mut e = Event::zeroed();
        e.skb = 0xffff8dee8aea9700;
        e.tstamp = 25340022557487;
        e.func = 0xffffffff81a00010;
        e.cpu = 1;
        e.dev[..2].copy_from_slice(b"lo");
        let mut raw = bytes(&e);
        assert_eq!(decode(&raw), Some(e));
        raw.extend([0, 0, 0, 0]); // kernel alignment padding
        assert_eq!(decode(&raw), Some(e));
    }

    #[test]
    fn short_samples_are_rejected() {
        for len in 0..EVENT_SIZE {
            assert_eq!(decode(&vec![0xff; len]), None);
        }
    }

    #[test]
    fn unknown_functions_are_rejected() {
        let index = HashMap::from([(0x1000, 7)]);
        let e = Event {
            func: 0x1000,
            skb: 1,
            ..Event::zeroed()
        };
        assert_eq!(resolve(e, &index).map(|r| r.func), Some(7));
        assert_eq!(resolve(Event { func: 0x2000, ..e }, &index), None);
    }

    /// Any bytes of any length: an event exactly when there are enough of
    /// them, and then exactly those bytes.
    #[test]
    fn any_bytes_decode_or_are_rejected() {
        let mut rng = Random::new(3);
        for _ in 0..100_000 {
            let len = rng.below(2 * EVENT_SIZE as u64) as usize;
            let raw = rng.bytes(len);
            match decode(&raw) {
                Some(event) => assert_eq!(bytes(&event), raw[..EVENT_SIZE]),
                None => assert!(raw.len() < EVENT_SIZE),
            }
        }
    }

    /// What `-w`'s programs send: the event flagged, the capture header and
    /// exactly `captured` bytes; a record shorter than it says is bad.
    #[test]
    fn decodes_captures_and_their_bytes() {
        let event = Event {
            flags: EVENT_CAPTURE,
            skb: 7,
            ..Event::zeroed()
        };
        let capture = Capture {
            netns: 4026531840,
            ifindex: 1,
            captured: 3,
            link: ipft_common::LINK_ETHERNET,
            ..Capture::default()
        };
        let mut raw = bytes(&event);
        // SAFETY: reading the bytes of a repr(C) value of integers.
        raw.extend(unsafe {
            std::slice::from_raw_parts((&capture as *const Capture).cast::<u8>(), CAPTURE_SIZE)
        });
        raw.extend([0xaa, 0xbb, 0xcc]);
        let frame = Frame {
            capture,
            bytes: vec![0xaa, 0xbb, 0xcc],
        };
        assert_eq!(decode_captured(&raw), Some((event, Some(frame))));
        assert_eq!(decode_captured(&raw[..raw.len() - 1]), None);
        let plain = Event { flags: 0, ..event };
        assert_eq!(decode_captured(&bytes(&plain)), Some((plain, None)));
    }

    #[test]
    fn frames_stay_beside_their_events_when_sorted() {
        let frame = |n: u8| {
            Some(Frame {
                capture: Capture::default(),
                bytes: vec![n],
            })
        };
        let at = |tstamp| Event {
            tstamp,
            ..Event::zeroed()
        };
        let mut batch = Batch {
            events: vec![at(30), at(10), at(20)],
            frames: vec![frame(3), frame(1), None],
            ..Batch::default()
        };
        batch.sort();
        let order: Vec<u64> = batch.events.iter().map(|e| e.tstamp).collect();
        assert_eq!(order, [10, 20, 30]);
        assert_eq!(batch.frames, [frame(1), None, frame(3)]);
    }

    /// A ring full of random bytes, read the way `drain` reads: every
    /// sample is kept or counted, never a panic.
    #[test]
    fn random_rings_are_kept_or_counted() {
        let mut rng = Random::new(4);
        let index = HashMap::from([(0x1000, 0)]);
        for _ in 0..20_000 {
            let len = rng.below(1024) as usize;
            let area = rng.bytes(len);
            let tail = rng.below(1 << 20);
            let head = tail + rng.below(area.len() as u64 + 1);
            let mut batch = Batch::default();
            let mut records = 0u64;
            perf::parse_records(&area[..], tail, head, &mut Vec::new(), |r| {
                records += u64::from(!matches!(r, perf::Record::Lost(_) | perf::Record::Other));
                take(r, &index, true, &mut batch);
            });
            assert_eq!(batch.events.len() as u64 + batch.bad, records);
            assert_eq!(batch.frames.len(), batch.events.len());
        }
    }
}
