//! Types shared by the eBPF programs and the `ipft` CLI.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes it, the
//! userspace side reads it byte for byte. Change a layout here and both sides
//! change together.
#![no_std]

/// One record per traced function call (or return) of a matching packet,
/// written by the eBPF programs to the `EVENTS` perf event array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `struct sk_buff *` the function was called with: the packet id.
    pub skb: u64,
    /// `bpf_ktime_get_ns()` at the time of the call.
    pub tstamp: u64,
    /// Function identity: the traced function's address (`bpf_get_func_ip`)
    /// for kprobe and ftrace programs, or a tracepoint slot id (see
    /// [`tracepoint_id`]) for tracepoint programs.
    pub func: u64,
    /// CPU the function ran on.
    pub cpu: u32,
    /// Bit flags, see [`EVENT_RETURN`].
    pub flags: u32,
}

/// `Event::flags` bit: the record is a function return (fexit), not an entry.
pub const EVENT_RETURN: u32 = 1;

/// Size in bytes of an [`Event`] as it travels through the perf buffer.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

/// Filter configuration, set once per run as the read-only global `CONFIG`
/// before the programs load (so the verifier sees constants).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `mark & mask`, precomputed so the program does one AND and one compare.
    pub mark: u32,
    pub mask: u32,
    /// Byte offset of `mark` in the running kernel's `struct sk_buff`, from BTF.
    pub mark_offset: u32,
    pub _reserved: u32,
}

/// kprobe programs exist for skb positions `0..KPROBE_POSITIONS` (the
/// register-passed arguments on x86_64).
pub const KPROBE_POSITIONS: usize = 6;
/// fentry/fexit programs exist for skb positions `0..FTRACE_POSITIONS`
/// (the trampoline passes at most 12 arguments).
pub const FTRACE_POSITIONS: usize = 12;
/// Tracepoint programs exist for skb positions `0..TP_POSITIONS`.
pub const TP_POSITIONS: usize = 5;
/// Tracepoint programs per skb position: a tracepoint program cannot ask the
/// kernel which tracepoint it runs on, so each attached tracepoint gets its
/// own copy of the program with a compile-time slot id.
pub const TP_SLOTS: usize = 32;

/// Function identity reported by the tracepoint program `tp_p{pos}_s{slot}`.
/// Small numbers never collide with kernel addresses.
pub const fn tracepoint_id(pos: usize, slot: usize) -> u64 {
    (pos * TP_SLOTS + slot) as u64
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are repr(C) integers only, with no padding.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Config {}
}
