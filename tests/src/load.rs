//! A marked-packet flood and what to watch during one, for flood.rs: the
//! lines ipft streams (counted, not kept), its memory, and the closing
//! counts it prints.
use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use regex::Regex;

use crate::packets;

/// Sends `count` marked datagrams as fast as the socket takes them, to one
/// receiver that never reads: once its queue is full the kernel drops the
/// rest on arrival, after the whole transmit and receive path ran. Then one
/// more, waited for until it is queued: loopback receives in order per CPU,
/// and all were sent from one CPU, so by then every datagram's events are in
/// the tracers' buffers. Returns the receivers, to keep until ipft stopped
/// (see `packets`).
pub fn flood(mark: u32, count: usize) -> Vec<UdpSocket> {
    let _pinned = Pinned::here();
    let from = packets::sender(Some(mark));
    let to = packets::sink();
    let addr = to.local_addr().unwrap();
    // Connected: one syscall per datagram.
    from.connect(addr).unwrap();
    for _ in 0..count {
        from.send(b"ipft")
            .unwrap_or_else(|e| panic!("send a datagram to {addr}: {e}"));
    }
    let mut sinks = packets::send_datagrams(&packets::sender(Some(mark)), 1);
    sinks.push(to);
    sinks
}

/// The calling thread kept on the CPU it runs on, until dropped: its
/// packets are then made, received and freed on one CPU.
pub struct Pinned(libc::cpu_set_t);

impl Pinned {
    pub fn here() -> Self {
        // SAFETY: cpu_set_t is plain data; the sched_* calls read or write
        // one we own, for the calling thread (pid 0).
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut before), 0);
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(libc::sched_getcpu() as usize, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            Pinned(before)
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: restores the affinity saved in `here`.
        unsafe { libc::sched_setaffinity(0, size, &self.0) };
    }
}

/// JSON lines from ipft's stdout, counted as they stream by.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lines {
    pub total: u64,
    /// Lines whose `"mark"` (`--field mark`) is the one traced.
    pub marked: u64,
}

/// Reads `stdout` to its end on a thread, keeping only counts. Every line
/// must look like a JSON object; one in a thousand is parsed in full (all
/// of them would cost more CPU than the ipft under test).
pub fn count_lines(stdout: impl Read + Send + 'static, mark: u32) -> JoinHandle<Lines> {
    let own = format!(r#","mark":"{mark:#x}""#);
    thread::spawn(move || {
        let mut lines = Lines::default();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("ipft writes UTF-8");
            assert!(
                line.starts_with('{') && line.ends_with('}'),
                "not JSON: {line}"
            );
            if lines.total % 1000 == 0 {
                let parsed = serde_json::from_str::<serde_json::Value>(&line);
                parsed.unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
            lines.total += 1;
            lines.marked += u64::from(line.contains(&own));
        }
        lines
    })
}

/// `VmRSS` of `pid` in KiB, 0 once it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The largest `VmRSS` of a process, sampled every 20 ms until stopped.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    pub fn watch(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (stop2, peak2) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                peak2.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        });
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// `Lost N events` on stderr, 0 without the line.
pub fn lost(stderr: &str) -> u64 {
    number(stderr, r"Lost (\d+) events")
}

/// `Stored the first N events (--max-events); M more were counted, not
/// stored`: (N, M), if said.
pub fn stored_and_counted(stderr: &str) -> Option<(u64, u64)> {
    let line = Regex::new(
        r"(?m)^Stored the first (\d+) events \(--max-events\); (\d+) more were counted, not stored$",
    )
    .unwrap();
    let c = line.captures(stderr)?;
    Some((c[1].parse().unwrap(), c[2].parse().unwrap()))
}

fn number(text: &str, pattern: &str) -> u64 {
    let re = Regex::new(pattern).unwrap();
    re.captures(text).map_or(0, |c| c[1].parse().unwrap())
}
