//! Streaming events from the kernel: the `EVENTS` perf event array, read on
//! every CPU with tokio, decoded into [`Record`]s.

/// One event as stored for the aggregate table: 40 bytes, fixed size. The
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
    pub cpu: u32,
    /// A function return (fexit, function_graph tracer), not an entry.
    pub is_return: bool,
}

/// "Absent" for [`Record`]'s optional indexes and values.
pub const NONE: u32 = u32::MAX;

use std::{collections::HashMap, io, task::Poll};

use anyhow::{Context, Result};
use aya::{
    maps::{
        perf::{PerfEvent, PerfEventArrayBuffer},
        MapData, PerfEventArray,
    },
    util::online_cpus,
    Ebpf,
};
use ipft_common::{Event, EVENT_SIZE};
use tokio::io::{unix::AsyncFd, Interest};

/// Decodes one perf sample; `None` when it is too short to be an [`Event`].
/// Total: any byte sequence decodes or is rejected, never a panic.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    let bytes = bytes.get(..EVENT_SIZE)?;
    // SAFETY: `Event` is repr(C) integers and byte arrays: every bit pattern
    // is a valid value, and the slice holds exactly its size.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// What one wake-up produced. Handing events over per wake-up keeps the
/// bookkeeping per batch, not per event.
#[derive(Debug, Default)]
pub struct Batch {
    /// Decoded events whose `func` is already the target index.
    pub events: Vec<Event>,
    /// Samples the kernel dropped because the buffer was full.
    pub lost: u64,
    /// Samples that did not decode, or named a function we did not attach.
    pub bad: u64,
}

/// Every CPU's perf buffer, read from one task: no channel, no per-event
/// hand-off, and a final synchronous drain when tracing stops.
pub struct Stream {
    buffers: Vec<AsyncFd<PerfEventArrayBuffer<MapData>>>,
    index: HashMap<u64, u32>,
}

impl Stream {
    /// Opens every online CPU's perf buffer of the `EVENTS` map.
    pub fn open(ebpf: &mut Ebpf, page_count: usize, index: HashMap<u64, u32>) -> Result<Self> {
        let map = ebpf
            .take_map("EVENTS")
            .context("the eBPF object has no EVENTS map")?;
        let mut array = PerfEventArray::try_from(map)?;
        let cpus = online_cpus()
            .map_err(|(_, e)| e)
            .context("cannot list online CPUs")?;
        let mut buffers = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let buf = array
                .open(cpu, Some(page_count))
                .with_context(|| format!("cannot open the perf buffer of CPU {cpu}"))?;
            // SAFETY: the buffer owns its perf event fd and keeps it open, the
            // same fd, until the AsyncFd (which owns the buffer) is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(buf, Interest::READABLE) }
                .map_err(io::Error::from)
                .context("cannot poll a perf buffer")?;
            buffers.push(fd);
        }
        Ok(Stream { buffers, index })
    }

    /// Waits until some CPU's buffer has data, and returns what it had.
    pub async fn next(&mut self) -> Batch {
        let Stream { buffers, index } = self;
        std::future::poll_fn(|cx| {
            for fd in buffers.iter_mut() {
                if let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready_mut(cx) {
                    let batch = drain(guard.get_inner_mut(), index);
                    guard.clear_ready();
                    if !batch.is_empty() {
                        return Poll::Ready(batch);
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Reads whatever every buffer still holds, without waiting: called
    /// once tracing stops so events already in the kernel are not lost.
    pub fn drain_all(&mut self) -> Batch {
        let mut all = Batch::default();
        for fd in &mut self.buffers {
            let batch = drain(fd.get_mut(), &self.index);
            all.events.extend(batch.events);
            all.lost += batch.lost;
            all.bad += batch.bad;
        }
        all
    }
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.lost == 0 && self.bad == 0
    }
}

fn drain(buf: &mut PerfEventArrayBuffer<MapData>, index: &HashMap<u64, u32>) -> Batch {
    let mut batch = Batch::default();
    buf.for_each(|event| match event {
        PerfEvent::Sample { head, tail } => {
            let event = if tail.is_empty() {
                decode(head)
            } else {
                // The sample straddles the ring's end: rare, so copying is fine.
                decode(&[head, tail].concat())
            };
            match event.and_then(|e| resolve(e, index)) {
                Some(event) => batch.events.push(event),
                None => batch.bad += 1,
            }
        }
        PerfEvent::Lost { count } => batch.lost += count,
    });
    batch
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

    fn bytes(e: &Event) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) value of integers.
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
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
}
