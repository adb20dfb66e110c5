//! Streaming events from the kernel: the `EVENTS` perf event array, read on
//! every CPU with tokio, decoded into [`Record`]s.

/// One decoded event, as stored for the aggregate table. Fixed size: the
/// function is an index into the run's target list, not a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The `struct sk_buff *` pointer: the packet id.
    pub skb: u64,
    /// Kernel monotonic time in nanoseconds (`bpf_ktime_get_ns`).
    pub tstamp: u64,
    /// Index into the `&[Target]` of this run.
    pub func: u32,
    pub cpu: u32,
    /// A function return (fexit, function_graph tracer), not an entry.
    pub is_return: bool,
}

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
use ipft_common::{Event, EVENT_RETURN, EVENT_SIZE};
use tokio::io::{unix::AsyncFd, Interest};

/// Decodes one perf sample; `None` when it is too short to be an [`Event`].
/// Total: any byte sequence decodes or is rejected, never a panic.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    let bytes: &[u8; EVENT_SIZE] = bytes.get(..EVENT_SIZE)?.try_into().ok()?;
    let u64_at = |i: usize| u64::from_ne_bytes(bytes[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
    Some(Event {
        skb: u64_at(0),
        tstamp: u64_at(8),
        func: u64_at(16),
        cpu: u32_at(24),
        flags: u32_at(28),
    })
}

/// What one wake-up produced. Handing records over per wake-up keeps the
/// bookkeeping per batch, not per event.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
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
            all.records.extend(batch.records);
            all.lost += batch.lost;
            all.bad += batch.bad;
        }
        all
    }
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.lost == 0 && self.bad == 0
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
            match event.and_then(|e| to_record(&e, index)) {
                Some(record) => batch.records.push(record),
                None => batch.bad += 1,
            }
        }
        PerfEvent::Lost { count } => batch.lost += count,
    });
    batch
}

/// Maps an event's function identity to its target index.
pub fn to_record(event: &Event, index: &HashMap<u64, u32>) -> Option<Record> {
    Some(Record {
        skb: event.skb,
        tstamp: event.tstamp,
        func: *index.get(&event.func)?,
        cpu: event.cpu,
        is_return: event.flags & EVENT_RETURN != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(e: &Event) -> Vec<u8> {
        [
            &e.skb.to_ne_bytes()[..],
            &e.tstamp.to_ne_bytes(),
            &e.func.to_ne_bytes(),
            &e.cpu.to_ne_bytes(),
            &e.flags.to_ne_bytes(),
        ]
        .concat()
    }

    #[test]
    fn decodes_what_the_programs_write() {
        let e = Event {
            skb: 0xffff8dee8aea9700,
            tstamp: 25340022557487,
            func: 0xffffffff81a00010,
            cpu: 1,
            flags: EVENT_RETURN,
        };
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
            ..Event::default()
        };
        assert_eq!(to_record(&e, &index).map(|r| r.func), Some(7));
        assert_eq!(to_record(&Event { func: 0x2000, ..e }, &index), None);
    }
}
