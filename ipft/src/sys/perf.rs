//! The perf ring buffer the programs write events into: `perf_event_open`
//! of a `PERF_COUNT_SW_BPF_OUTPUT` event per CPU, its mmap'ed ring, and a
//! reader for the records in it.
//!
//! ipft opens these itself (rather than with aya's `PerfEventArray::open`)
//! to choose how often the kernel wakes the reader: waking on every event
//! costs a context switch per event under a flood, which is when events get
//! lost; waking every `wakeup_events` events, with a periodic drain for
//! quiet times, does not.
use std::{
    io,
    os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd},
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
        // SAFETY: attr is a valid perf_event_attr of the size it declares.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
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
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
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
    pub fn read(&mut self, mut f: impl FnMut(Record<'_>)) {
        let head = self.meta(DATA_HEAD).load(Ordering::Acquire);
        let mut tail = self.meta(DATA_TAIL).load(Ordering::Relaxed);
        while tail < head {
            let start = (tail % self.data_size as u64) as usize;
            // Record sizes are multiples of 8 and the ring a power of two,
            // so an 8-byte header never wraps.
            let header = self.bytes(start, 8);
            let kind = u32::from_ne_bytes(header[0..4].try_into().unwrap());
            let size = usize::from(u16::from_ne_bytes(header[6..8].try_into().unwrap()));
            if size < 8 {
                break; // corrupt: stop rather than spin
            }
            let record = self.record(start, size);
            match kind {
                PERF_RECORD_SAMPLE if record.len() >= 12 => {
                    let len = u32::from_ne_bytes(record[8..12].try_into().unwrap()) as usize;
                    f(Record::Sample(&record[12..(12 + len).min(record.len())]));
                }
                PERF_RECORD_LOST if record.len() >= 24 => {
                    f(Record::Lost(u64::from_ne_bytes(
                        record[16..24].try_into().unwrap(),
                    )));
                }
                _ => {}
            }
            tail += size as u64;
        }
        self.meta(DATA_TAIL).store(tail, Ordering::Release);
    }

    /// A whole record, copied into `scratch` only when it wraps.
    fn record(&mut self, start: usize, size: usize) -> &[u8] {
        if start + size <= self.data_size {
            return self.bytes(start, size);
        }
        let first = self.data_size - start;
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.extend_from_slice(self.bytes(start, first));
        copy.extend_from_slice(self.bytes(0, size - first));
        self.scratch = copy;
        &self.scratch
    }

    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        // SAFETY: start + len lies within the data area, which stays mapped
        // while self lives; the kernel does not write there before we
        // advance data_tail.
        unsafe { std::slice::from_raw_parts(self.base.add(self.data_offset + start), len) }
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

unsafe fn read_u64(base: *mut u8, offset: usize) -> u64 {
    ptr::read_volatile(base.add(offset).cast::<u64>())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}
