//! The perf ring buffer the programs write events into: `perf_event_open`
//! of a `PERF_COUNT_SW_BPF_OUTPUT` event per CPU, its mmap'ed ring, and a
//! reader for the records in it. Also the kprobes of the kprobe backend
//! ([`kprobe_open`]), which are perf events too.
//!
//! ipft opens these itself (rather than with aya's `PerfEventArray::open`)
//! to choose how often the kernel wakes the reader: waking on every event
//! costs a context switch per event under a flood, which is when events get
//! lost; waking every `wakeup_events` events, with a periodic drain for
//! quiet times, does not.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr,
    sync::atomic::{AtomicU64, Ordering},
};

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// `perf_event_attr` as of its first version (`PERF_ATTR_SIZE_VER0`): all
/// ipft sets; the kernel reads the rest as zeros.
const ATTR_SIZE_VER0: u32 = 64;

#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit fields (`disabled`, `watermark`, …): all zero for ipft.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

/// `PERF_ATTR_SIZE_VER1`: up to `config2`, which kprobes use.
const ATTR_SIZE_VER1: u32 = 72;
/// `_IO('$', 0)`, `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// The `disabled` bit of `PerfEventAttr::flags`.
const ATTR_DISABLED: u64 = 1;

/// `perf_event_open(attr, any task, cpu)`, close-on-exec.
fn perf_event_open(attr: &PerfEventAttr, cpu: u32) -> io::Result<OwnedFd> {
    // SAFETY: attr is a valid perf_event_attr of the size it declares.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            -1,
            cpu as i32,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The perf PMU type of kprobes (`/sys/bus/event_source/devices/kprobe/type`).
pub fn kprobe_pmu_type() -> io::Result<u32> {
    let text = std::fs::read_to_string("/sys/bus/event_source/devices/kprobe/type")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Creates a kprobe on the function at kernel address `addr` that runs BPF
/// program `prog` (a kprobe program) on every call, or on every return for
/// a [`Probe::Return`], and enables it. Closing the returned fd removes the
/// kprobe. (Kernel 4.17: perf kprobe PMU.)
pub fn kprobe_open(
    pmu_type: u32,
    probe: Probe,
    addr: u64,
    prog: BorrowedFd<'_>,
) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        type_: pmu_type,
        size: ATTR_SIZE_VER1,
        // The PMU's `retprobe` format bit (config:0, fixed since 4.17).
        config: match probe {
            Probe::Entry => 0,
            Probe::Return => 1,
        },
        sample_period: 1,
        flags: ATTR_DISABLED,
        // No function name: the probe is at kprobe_addr (config2) + 0.
        config1: 0,
        config2: addr,
        ..PerfEventAttr::default()
    };
    // A kprobe event is per CPU in form only (cpu 0, any task): it fires
    // on every CPU.
    let fd = perf_event_open(&attr, 0)?;
    // SAFETY: both ioctls take an int argument on a perf event fd.
    let ioctl = |request, arg: libc::c_int| unsafe {
        match libc::ioctl(fd.as_raw_fd(), request, arg) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    ioctl(PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd())?;
    ioctl(PERF_EVENT_IOC_ENABLE, 0)?;
    Ok(fd)
}

/// Where a kprobe fires: on a function's entry or its return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Entry,
    Return,
}

/// Offsets in `struct perf_event_mmap_page`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

/// What the ring holds.
pub enum Record<'a> {
    /// The bytes one `bpf_perf_event_output` wrote (plus alignment padding).
    Sample(&'a [u8]),
    /// The kernel dropped this many samples: the ring was full.
    Lost(u64),
    /// A record ipft does not use (the kernel writes only the two above to a
    /// BPF output event's ring).
    Other,
    /// Bytes that form no record (a size that cannot be): everything up to
    /// the head is skipped, so one bad header costs one count, not the ring.
    Corrupt,
}

/// One CPU's ring.
pub struct PerfRing {
    fd: OwnedFd,
    base: *mut u8,
    mmap_len: usize,
    data_offset: usize,
    data_size: usize,
    /// Holds a record that wraps around the ring's end, contiguous.
    scratch: Vec<u8>,
}

// SAFETY: the mapping belongs to this value alone; moving it to another
// thread moves the only access to it.
unsafe impl Send for PerfRing {}

impl PerfRing {
    /// Opens CPU `cpu`'s ring of `pages` pages (a power of two), waking the
    /// reader every `wakeup_events` samples.
    pub fn open(cpu: u32, pages: usize, wakeup_events: u32) -> io::Result<Self> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: ATTR_SIZE_VER0,
            config: PERF_COUNT_SW_BPF_OUTPUT,
            sample_period: 1,
            sample_type: PERF_SAMPLE_RAW,
            wakeup_events: wakeup_events.max(1),
            ..PerfEventAttr::default()
        };
        let fd = perf_event_open(&attr, cpu)?;
        let page = page_size();
        let mmap_len = page * (pages + 1);
        // SAFETY: mapping a perf event fd as the kernel documents: one
        // metadata page, then a power-of-two number of data pages.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                mmap_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base.cast::<u8>();
        // SAFETY: the metadata page is mapped; old kernels leave these zero.
        let (offset, size) = unsafe {
            (
                read_u64(base, DATA_OFFSET) as usize,
                read_u64(base, DATA_SIZE) as usize,
            )
        };
        let (data_offset, data_size) = if size == 0 {
            (page, page * pages)
        } else {
            (offset, size)
        };
        Ok(PerfRing {
            fd,
            base,
            mmap_len,
            data_offset,
            data_size,
            scratch: Vec::new(),
        })
    }

    /// Hands every record in the ring to `f`, then frees their space.
    pub fn read(&mut self, f: impl FnMut(Record<'_>)) {
        let head = self.meta(DATA_HEAD).load(Ordering::Acquire);
        let tail = self.meta(DATA_TAIL).load(Ordering::Relaxed);
        let data = Mapped {
            base: self.base.wrapping_add(self.data_offset),
            len: self.data_size,
        };
        let tail = parse_records(&data, tail, head, &mut self.scratch, f);
        self.meta(DATA_TAIL).store(tail, Ordering::Release);
    }

    fn meta(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: data_head/data_tail are aligned u64s in the mapped
        // metadata page, shared with the kernel: accessed atomically.
        unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
    }
}

impl AsFd for PerfRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::os::fd::AsRawFd for PerfRing {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open mapped.
        unsafe { libc::munmap(self.base.cast(), self.mmap_len) };
    }
}

/// A ring's data area: the mapped pages, or plain bytes in tests.
pub trait Area {
    fn len(&self) -> usize;
    /// `len` bytes from `start`; only called with `start + len <= self.len()`.
    fn bytes(&self, start: usize, len: usize) -> &[u8];
}

impl Area for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        &self[start..start + len]
    }
}

/// The mapped data pages. Not a `&[u8]` over the whole area: the kernel
/// writes outside `[tail, head)` while we read, so only that stable part is
/// ever borrowed.
struct Mapped {
    base: *const u8,
    len: usize,
}

impl Area for Mapped {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        // SAFETY: start + len lies within the data area, which stays mapped
        // while the ring lives; the kernel does not write between tail and
        // head before we advance data_tail.
        unsafe { std::slice::from_raw_parts(self.base.add(start), len) }
    }
}

/// Parses the records between `tail` and `head` (byte counters that only
/// grow; positions wrap at the area's length), hands each to `f`, and
/// returns the new tail. Total: whatever the bytes, it stops at `head`
/// without panicking, reporting bytes that form no record as
/// [`Record::Corrupt`].
pub fn parse_records<A: Area + ?Sized>(
    area: &A,
    mut tail: u64,
    head: u64,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(Record<'_>),
) -> u64 {
    let ring = area.len() as u64;
    if head.saturating_sub(tail) > ring {
        f(Record::Corrupt); // the head claims more than the ring holds
        return head;
    }
    while tail < head {
        if head - tail < 8 {
            f(Record::Corrupt); // not even a header's worth
            return head;
        }
        let start = (tail % ring) as usize;
        let header = contiguous(area, start, 8, scratch);
        let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
        let size = u16::from_ne_bytes([header[6], header[7]]);
        if size < 8 || u64::from(size) > head - tail {
            f(Record::Corrupt);
            return head;
        }
        f(decode_record(
            kind,
            contiguous(area, start, size.into(), scratch),
        ));
        tail += u64::from(size);
    }
    tail
}

/// One record's bytes (header included) as a [`Record`].
fn decode_record(kind: u32, record: &[u8]) -> Record<'_> {
    let u32_at = |at: usize| {
        let bytes = record.get(at..at + 4)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    };
    match kind {
        PERF_RECORD_SAMPLE => match u32_at(8) {
            Some(len) => {
                let end = (12 + len as usize).min(record.len());
                Record::Sample(&record[12..end])
            }
            None => Record::Corrupt,
        },
        PERF_RECORD_LOST => match record.get(16..24) {
            Some(count) => Record::Lost(u64::from_ne_bytes(count.try_into().unwrap_or_default())),
            None => Record::Corrupt,
        },
        _ => Record::Other,
    }
}

/// `len` bytes from `start` (`len <= area.len()`), copied into `scratch`
/// only when they wrap around the area's end.
fn contiguous<'a, A: Area + ?Sized>(
    area: &'a A,
    start: usize,
    len: usize,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    if start + len <= area.len() {
        return area.bytes(start, len);
    }
    let first = area.len() - start;
    scratch.clear();
    scratch.extend_from_slice(area.bytes(start, first));
    scratch.extend_from_slice(area.bytes(0, len - first));
    scratch
}

unsafe fn read_u64(base: *mut u8, offset: usize) -> u64 {
    ptr::read_volatile(base.add(offset).cast::<u64>())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;

    /// What a parse produced, owned, to compare.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Sample(Vec<u8>),
        Lost(u64),
        Corrupt,
        Other,
    }

    fn parse(area: &[u8], tail: u64, head: u64) -> (Vec<Seen>, u64) {
        let mut seen = Vec::new();
        let mut scratch = Vec::new();
        let tail = parse_records(area, tail, head, &mut scratch, |r| {
            seen.push(match r {
                Record::Sample(bytes) => Seen::Sample(bytes.to_vec()),
                Record::Lost(n) => Seen::Lost(n),
                Record::Corrupt => Seen::Corrupt,
                Record::Other => Seen::Other,
            })
        });
        (seen, tail)
    }

    /// A record as the kernel lays it out: header, body, padded to 8.
    fn record(kind: u32, body: &[u8]) -> Vec<u8> {
        let size = (8 + body.len()).next_multiple_of(8);
        let mut out = kind.to_ne_bytes().to_vec();
        out.extend(0u16.to_ne_bytes());
        out.extend((size as u16).to_ne_bytes());
        out.extend(body);
        out.resize(size, 0);
        out
    }

    fn sample(data: &[u8]) -> Vec<u8> {
        let mut body = (data.len() as u32).to_ne_bytes().to_vec();
        body.extend(data);
        record(PERF_RECORD_SAMPLE, &body)
    }

    fn lost(count: u64) -> Vec<u8> {
        let mut body = 7u64.to_ne_bytes().to_vec(); // the event id
        body.extend(count.to_ne_bytes());
        record(PERF_RECORD_LOST, &body)
    }

    /// Writes `bytes` at byte counter `at`, wrapping like the kernel.
    fn write(area: &mut [u8], at: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let pos = (at as usize + i) % area.len();
            area[pos] = *b;
        }
    }

    /// Records written by a kernel-like writer, wrapping around the end
    /// many times, read back exactly.
    #[test]
    fn reads_back_what_a_writer_wrote() {
        let mut rng = Random::new(1);
        let mut area = vec![0u8; 512];
        let mut tail = 400; // records wrap from the start
        for _ in 0..20_000 {
            let mut head = tail;
            let mut want = Vec::new();
            while want.len() < 4 {
                let len = rng.below(120) as usize;
                let (bytes, seen) = match rng.below(5) {
                    0 => {
                        let n = rng.next();
                        (lost(n), Seen::Lost(n))
                    }
                    _ => {
                        let data = rng.bytes(len);
                        (sample(&data), Seen::Sample(data))
                    }
                };
                if head + bytes.len() as u64 - tail > area.len() as u64 {
                    break;
                }
                write(&mut area, head, &bytes);
                head += bytes.len() as u64;
                want.push(seen);
            }
            let (seen, new_tail) = parse(&area, tail, head);
            assert_eq!(seen, want);
            assert_eq!(new_tail, head);
            tail = head;
        }
    }

    /// Any bytes and any counters: no panic, the tail ends at the head, and
    /// a sample never claims more bytes than the ring has.
    #[test]
    fn any_bytes_parse_without_panic() {
        let mut rng = Random::new(2);
        for _ in 0..200_000 {
            let len = rng.below(300) as usize;
            let area = rng.bytes(len);
            let tail = match rng.below(4) {
                0 => u64::MAX - rng.below(600),
                _ => rng.below(1 << 40),
            };
            let head = tail.saturating_add(rng.below(2 * len as u64 + 16));
            let (seen, new_tail) = parse(&area, tail, head);
            assert_eq!(new_tail, head.max(tail));
            for s in seen {
                if let Seen::Sample(bytes) = s {
                    assert!(bytes.len() <= len);
                }
            }
        }
    }

    #[test]
    fn a_bad_size_is_one_count_and_skips_to_the_head() {
        let mut area = vec![0u8; 64];
        let good = sample(b"ok");
        write(&mut area, 0, &good);
        let bad = record(PERF_RECORD_SAMPLE, &[0xff; 8]);
        write(&mut area, good.len() as u64, &bad[..6]); // size 0
        let (seen, tail) = parse(&area, 0, 48);
        assert_eq!(seen, [Seen::Sample(b"ok".to_vec()), Seen::Corrupt]);
        assert_eq!(tail, 48);
        let (seen, tail) = parse(&area, 0, 100);
        assert_eq!(seen, [Seen::Corrupt], "a head beyond the ring's size");
        assert_eq!(tail, 100);
    }
}
