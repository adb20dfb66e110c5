//! What an ipft leaves behind, however it ends (signal, panic, SIGKILL),
//! for robust.rs: its programs are gone from the kernel and the next run
//! works.
use std::{
    fs, thread,
    time::{Duration, Instant},
};

use crate::{kernel, packets, parse::parse_table, process::READY_TIMEOUT, Ipft};

/// Whether `pid` has a handler for `signal` (`SigCgt` in its status): from
/// then on the signal is ipft's to handle, not the default kill.
pub fn catches(pid: i32, signal: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    caught & (1 << (signal - 1)) != 0
}

/// Waits (hang protection) until `pid` holds a BPF program and handles
/// SIGINT: it is attaching. Returns the programs held then (empty if it
/// never got there).
pub fn wait_attaching(pid: i32) -> Vec<u32> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        let held = kernel::programs_held_by(pid);
        if !held.is_empty() && catches(pid, libc::SIGINT) {
            return held;
        }
        thread::sleep(Duration::from_millis(20));
    }
    Vec::new()
}

/// Asserts that none of `held` (ipft's programs before it ended) is still
/// loaded, after the kernel's asynchronous release.
pub fn assert_released(held: &[u32], context: &dyn std::fmt::Display) {
    assert!(!held.is_empty(), "ipft held no programs\n{context}");
    let left = kernel::wait_unloaded(held);
    assert!(
        left.is_empty(),
        "programs {left:?} outlived ipft\n{context}"
    );
}

/// A fresh ipft on `mark` traces one datagram and exits 0: whatever ended
/// the previous run left nothing in the way.
pub fn assert_next_run_works(mark: u32) {
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &format!("{mark:#x}")]);
    let _sinks = packets::send_datagrams(&packets::sender(Some(mark)), 1);
    let out = ipft.stop(libc::SIGINT);
    assert_eq!(out.code(), Some(0), "the next run failed\n{out}");
    assert_eq!(parse_table(&out.stdout).len(), 1, "the next run\n{out}");
}
