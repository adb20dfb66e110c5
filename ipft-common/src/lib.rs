//! Types shared by the eBPF programs and the `ipft` CLI.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes it, the
//! userspace side reads it byte for byte. Change a layout here and both sides
//! change together.
#![no_std]

pub mod maps;
pub mod programs;

/// One record per traced function call (or return) of a matching packet,
/// written by the eBPF programs to the `EVENTS` perf event array.
///
/// Besides the call itself it carries a snapshot of the packet, read from
/// the skb at that moment: userspace builds the packet summary line and the
/// `--field` values from it. Only matching calls pay for the snapshot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `struct sk_buff *` the function was called with: the packet id.
    pub skb: u64,
    /// `bpf_ktime_get_ns()` at the time of the call.
    pub tstamp: u64,
    /// Function identity: the traced function's address (`bpf_get_func_ip`)
    /// for kprobe and ftrace programs, or a tracepoint id (see
    /// [`tracepoint_id`]) for tracepoint programs.
    pub func: u64,
    /// CPU the function ran on.
    pub cpu: u32,
    /// Bit flags: [`EVENT_RETURN`], [`EVENT_DROP_REASON`], [`EVENT_CLONE`],
    /// [`EVENT_CAPTURE`], [`EVENT_STACK`].
    pub flags: u32,
    /// `skb->len`, `skb->data_len`, `skb->mark`.
    pub len: u32,
    pub data_len: u32,
    pub mark: u32,
    /// `enum skb_drop_reason`, when [`EVENT_DROP_REASON`] is set.
    pub drop_reason: u32,
    /// `skb->protocol` (network byte order, as stored).
    pub protocol: u16,
    /// `skb->network_header` (offset from `skb->head`; `0xffff` when unset).
    pub network_header: u16,
    /// From `skb_shinfo(skb)`.
    pub gso_size: u16,
    pub gso_segs: u16,
    pub gso_type: u32,
    /// `skb->dev->name`, empty when there is no device yet.
    pub dev: [u8; 16],
    /// The first bytes at the network header: the IP header and the start of
    /// the transport header (ports), when the network header is set.
    pub headers: [u8; HEADER_BYTES],
    /// With [`EVENT_CLONE`]: the skb this one was cloned or copied from.
    pub parent: u64,
    /// Where the function was called from, when the program can tell: the
    /// return address at a kprobe's entry (`*(u64 *)regs->sp`), or the
    /// `kfree_skb` tracepoint's `location`; 0 otherwise (fentry programs
    /// leave it to the stack, see [`EVENT_STACK`]).
    pub caller: u64,
    /// With [`EVENT_STACK`]: the kernel stack's id in the `STACKS` map.
    pub stack_id: u32,
    /// Zero; keeps the size a multiple of 8 with no hidden padding.
    pub reserved: u32,
    /// With [`EVENT_RETURN`] (function_graph): the function's return
    /// value, the whole register (`rax`, or fexit's return slot); userspace
    /// reads as much of it as the function's BTF return type says.
    pub retval: u64,
}

/// Bytes of packet headers each event carries: an IPv6 header (40) plus the
/// 8 bytes of a UDP header or of TCP's ports.
pub const HEADER_BYTES: usize = 48;

impl Event {
    pub const fn zeroed() -> Self {
        Event {
            skb: 0,
            tstamp: 0,
            func: 0,
            cpu: 0,
            flags: 0,
            len: 0,
            data_len: 0,
            mark: 0,
            drop_reason: 0,
            protocol: 0,
            network_header: 0,
            gso_size: 0,
            gso_segs: 0,
            gso_type: 0,
            dev: [0; 16],
            headers: [0; HEADER_BYTES],
            parent: 0,
            caller: 0,
            stack_id: 0,
            reserved: 0,
            retval: 0,
        }
    }
}

/// `Event::flags` bit: the record is a function return (fexit), not an entry.
pub const EVENT_RETURN: u32 = 1;
/// `Event::flags` bit: `drop_reason` holds the kernel's drop reason.
pub const EVENT_DROP_REASON: u32 = 2;
/// `Event::flags` bit (`--track`): `skb` is a new clone or copy of `parent`,
/// reported as the cloning function returns.
pub const EVENT_CLONE: u32 = 4;
/// `Event::flags` bit (`-w`): a [`Capture`] and its bytes follow the event
/// in the same perf record.
pub const EVENT_CAPTURE: u32 = 8;
/// `Event::flags` bit: `stack_id` names the kernel stack of the call in the
/// `STACKS` map (`--stack`, and the drop programs of fentry, whose caller
/// comes from the stack).
pub const EVENT_STACK: u32 = 16;

/// `-w`: where a captured frame came from and how its bytes lie in the skb.
/// Follows the [`Event`] in a record flagged [`EVENT_CAPTURE`], and is
/// followed by `captured` bytes of the skb's linear data from `start`.
/// Offsets are from `skb->head`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// Inode number of the device's network namespace; 0 without a device.
    pub netns: u32,
    /// `skb->dev->ifindex`; 0 without a device.
    pub ifindex: u32,
    /// `skb->data - skb->head`: with `Event::len`, where the packet ends.
    pub data: u32,
    /// `skb->tail`: where the linear data ends.
    pub tail: u32,
    /// `skb->mac_header` (`0xffff` when unset).
    pub mac_header: u16,
    /// The first captured byte: the MAC header ([`LINK_ETHERNET`]) or the
    /// network header ([`LINK_RAW`]).
    pub start: u16,
    /// [`LINK_ETHERNET`], [`LINK_RAW`], or [`LINK_NONE`] (no header set:
    /// nothing captured).
    pub link: u16,
    /// Bytes that follow, at most the snap length; 0 also when they could
    /// not be read.
    pub captured: u16,
}

/// [`Capture::link`]: no MAC or network header is set yet.
pub const LINK_NONE: u16 = 0;
/// [`Capture::link`]: the bytes start at an Ethernet header.
pub const LINK_ETHERNET: u16 = 1;
/// [`Capture::link`]: the bytes start at an IPv4 or IPv6 header.
pub const LINK_RAW: u16 = 2;

/// Size in bytes of a [`Capture`] header.
pub const CAPTURE_SIZE: usize = core::mem::size_of::<Capture>();
const _: () = assert!(CAPTURE_SIZE == 24);

/// The most bytes of one frame `--snaplen` may ask for: the per-CPU buffer
/// a capture is assembled in holds this many after the event.
pub const SNAPLEN_MAX: u32 = 4096;

/// What the programs send per traced call with `-w`: the event, where the
/// frame came from, and up to [`SNAPLEN_MAX`] bytes of it; only the first
/// `EVENT_SIZE + CAPTURE_SIZE + capture.captured` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureRecord {
    pub event: Event,
    pub capture: Capture,
    pub bytes: [u8; SNAPLEN_MAX as usize],
}

/// `--track` on kprobes: what a cloning function's entry leaves for its
/// return probe, keyed by `bpf_get_current_pid_tgid()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cloning {
    pub parent: u64,
    pub func: u64,
}

/// kprobe-multi: one slot of the `ARG_SLOTS` array, where
/// `programs::KPROBE_SKB_ANY` finds a function's argument positions
/// (`programs::args`) by its identity: the slot [`arg_slot`] gives, when
/// no other identity took it first (those are in the `ARGS` hash map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSlot {
    pub func: u64,
    pub args: u16,
    pub pad: [u16; 3],
}

/// Slots in `ARG_SLOTS` (a power of two).
pub const ARG_SLOTS: u32 = 4096;

/// The `ARG_SLOTS` slot of a function identity: functions start 16 bytes
/// apart at least, and a function's two identities (around its ENDBR) are
/// 4 bytes apart, so the bits from the third up spread them.
pub const fn arg_slot(func: u64) -> u32 {
    (func >> 2) as u32 & (ARG_SLOTS - 1)
}

/// Size in bytes of an [`Event`] as it travels through the perf buffer.
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();
const _: () = assert!(EVENT_SIZE == 160);

/// Filter configuration and the running kernel's struct layout, set once per
/// run as the read-only global `CONFIG` before the programs load (so the
/// verifier sees constants). Offsets are in bytes, from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `mark & mask`, precomputed so the program does one AND and one compare.
    pub mark: u32,
    /// 0 when no mark is asked for (`-f` alone): the programs read none.
    pub mask: u32,
    /// Bit flags: [`CONFIG_TRACK`], [`CONFIG_GRAPH`], [`CONFIG_CAPTURE`],
    /// [`CONFIG_FILTER`], [`CONFIG_RDONLY_CAST`], [`CONFIG_STACK`],
    /// [`CONFIG_STACK_DROPS`], [`CONFIG_NETNS`], [`CONFIG_DEV`].
    pub flags: u32,
    /// `-w`: bytes of each frame to capture, at most [`SNAPLEN_MAX`].
    pub snaplen: u32,
    pub offsets: Offsets,
    /// `-w` only (zero without): read on the capture path alone.
    pub capture: CaptureOffsets,
    /// `-w`, `--netns` and `--dev` only (zero without): where a packet's
    /// device and namespace are.
    pub place: PlaceOffsets,
    /// vmlinux BTF id of `struct sk_buff`: the type `bpf_rdonly_cast` casts
    /// the skb to (with [`CONFIG_RDONLY_CAST`]); the kfunc takes it as a
    /// constant, which a frozen map's value is to the verifier.
    pub skb_btf_id: u32,
    /// vmlinux BTF id of the FUNC `bpf_rdonly_cast`: userspace turns each
    /// [`KFUNC_RDONLY_CAST`] call into a kfunc call to it. The programs do
    /// not read it.
    pub rdonly_cast_btf_id: u32,
    /// With [`CONFIG_NETNS`]: the inode number of the namespace a packet
    /// must be in (its device's, or without a device its socket's).
    pub netns: u32,
    /// With [`CONFIG_DEV`]: the `ifindex` of the device (in the namespace
    /// `netns`) a packet must be on.
    pub ifindex: u32,
}

/// `Config::flags` bit: keep tracing a matched skb (by pointer, in the
/// `TRACKED` map) after its mark changes, until it is freed.
pub const CONFIG_TRACK: u32 = 1;
/// `Config::flags` bit: function_graph. The entry programs remember each
/// traced call in the `ENTERED` map (see [`Call`]) so that its return is
/// reported without reading the skb again (it may be freed and reused by
/// then, and a return probe no longer has it).
pub const CONFIG_GRAPH: u32 = 2;
/// `Config::flags` bit (`-w`): each traced call also sends the packet's
/// bytes ([`CaptureRecord`]). Checked only after the mark matched.
pub const CONFIG_CAPTURE: u32 = 4;
/// `Config::flags` bit (`-f`): a packet must also pass the filter function
/// [`FILTER_FUNCTION`], which userspace replaces at load with the
/// translation of the filter expression.
pub const CONFIG_FILTER: u32 = 8;

/// The eBPF object's placeholder for the `-f` filter: a function of its
/// own, `fn(skb: u64) -> u64` (non-zero: the packet matches), called only
/// when [`CONFIG_FILTER`] is set.
pub const FILTER_FUNCTION: &str = "ipft_filter";

/// `Config::flags` bit (`--netns`, and `--dev`, which also names its
/// namespace): a packet must be in the namespace `Config::netns`: its
/// device's (`skb->dev->nd_net`), or, while it has no device yet, its
/// socket's (`skb->sk->__sk_common.skc_net`).
pub const CONFIG_NETNS: u32 = 32;
/// `Config::flags` bit (`--dev`): a packet must be on the device
/// `Config::ifindex` (with [`CONFIG_NETNS`], of that namespace); a packet
/// without a device does not match.
pub const CONFIG_DEV: u32 = 64;

/// `Config::flags` bit: the kernel has the kfunc `bpf_rdonly_cast` (6.2+).
/// The programs then read `skb->mark` through the cast pointer with a plain
/// load, which costs a fifth of a `bpf_probe_read_kernel` call on the path
/// every unmatched packet takes.
pub const CONFIG_RDONLY_CAST: u32 = 16;

/// `Config::flags` bit (`--stack`): every traced call also records its
/// kernel stack in the `STACKS` map ([`EVENT_STACK`]). Checked only after
/// the packet matched.
pub const CONFIG_STACK: u32 = 128;
/// `Config::flags` bit (`--stack=drops`): only the programs of the
/// functions and tracepoint that free an skb with a drop reason record it.
pub const CONFIG_STACK_DROPS: u32 = 256;

// Every flag its own bit: their sum is their union only then.
const _: () = {
    let flags = [
        CONFIG_TRACK,
        CONFIG_GRAPH,
        CONFIG_CAPTURE,
        CONFIG_FILTER,
        CONFIG_RDONLY_CAST,
        CONFIG_NETNS,
        CONFIG_DEV,
        CONFIG_STACK,
        CONFIG_STACK_DROPS,
    ];
    let (mut sum, mut union, mut i) = (0, 0, 0);
    while i < flags.len() {
        assert!(flags[i].is_power_of_two());
        sum += flags[i];
        union |= flags[i];
        i += 1;
    }
    assert!(sum == union, "two CONFIG flags share a bit");
};

/// Entries of the `STACKS` map with `--stack`: distinct kernel stacks kept
/// (the kernel keeps the first stack of each hash bucket: a later stack
/// that collides gets none).
pub const STACKS_MAX: u32 = 4096;
/// Entries of the `STACKS` map without `--stack`, where only fentry's drop
/// programs use it (their caller is read from the stack).
pub const STACKS_DROPS_ONLY: u32 = 256;

/// Placeholder helper id the programs call for `bpf_rdonly_cast`: Rust
/// cannot emit a kfunc call, so userspace rewrites each `call` with this
/// immediate before loading — into the kfunc call with
/// [`CONFIG_RDONLY_CAST`], else into `r0 = 0` (that code is dead then, but
/// no unknown helper id reaches the verifier). Far above any real helper id.
pub const KFUNC_RDONLY_CAST: u32 = 0x7ff0_0001;

/// Key of the `ENTERED` map: one traced call in flight; the value is its
/// skb.
///
/// `frame` tells apart the calls of one function in flight in one task at
/// once (a tunnel re-enters `__dev_queue_xmit` with the inner skb while the
/// outer call waits). fentry/fexit both have the skb argument, so it is the
/// skb. A return probe has no arguments left, so kprobes key by the call's
/// stack frame instead: the address of the return address, which is
/// `regs->sp` at entry (the function has pushed nothing yet) and
/// `regs->sp - 8` at return (the kernel's return trampoline reports the
/// stack pointer after `ret` popped it: rethook on x86, the same for
/// kretprobes and kprobe-multi return links). Nested calls have distinct
/// frames; a tail call shares its caller's frame but not its `func`. Only
/// a traced call's entry writes the map, so untraced calls cost nothing on
/// entry, and a return finds nothing for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Call {
    pub frame: u64,
    pub func: u64,
    pub pid_tgid: u64,
}

/// Entries of the `ENTERED` map: traced calls in flight at once.
pub const ENTERED_MAX: u32 = 16384;

/// Where fields live in this kernel's structs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub skb_mark: u32,
    pub skb_len: u32,
    pub skb_data_len: u32,
    pub skb_protocol: u32,
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_end: u32,
    pub skb_dev: u32,
    pub dev_name: u32,
    pub shinfo_gso_size: u32,
    pub shinfo_gso_segs: u32,
    pub shinfo_gso_type: u32,
}

/// `-w`: where the frame's bytes are. Apart from [`Offsets`] so that a
/// matched call without `-w` loads none of them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureOffsets {
    pub skb_mac_header: u32,
    pub skb_data: u32,
    pub skb_tail: u32,
}

/// `-w`, `--netns`, `--dev`: where a packet's device and namespace are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaceOffsets {
    pub dev_ifindex: u32,
    /// `net_device.nd_net.net`: the device's `struct net *`.
    pub dev_net: u32,
    /// `net.ns.inum`: the namespace's inode number.
    pub net_inum: u32,
    /// `sk_buff.sk`: the socket, whose namespace stands for a packet's
    /// while it has no device.
    pub skb_sk: u32,
    /// `sock.__sk_common.skc_net.net`: the socket's `struct net *`.
    pub sk_net: u32,
}

/// Entries of the `TRACKED` map (`--track`): skbs followed at once.
pub const TRACKED_MAX: u32 = 65536;

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

/// Function identity reported by `tp_kfree_skb`, the `kfree_skb` tracepoint
/// program that also reads the drop reason.
pub const TP_KFREE_SKB_ID: u64 = (TP_POSITIONS * TP_SLOTS) as u64;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are repr(C) integers only, with no padding.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Cloning {}
    unsafe impl aya::Pod for super::Call {}
}
