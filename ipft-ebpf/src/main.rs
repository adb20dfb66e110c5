//! ipft's eBPF programs.
//!
//! Every program does the same thing: take the `struct sk_buff *` argument,
//! read `skb->mark` at the offset userspace found in BTF (a direct load
//! through `bpf_rdonly_cast` where the kernel has it), and return at once
//! unless `(mark & mask) == mark_filter`; with `-f`, call the filter
//! function [`ipft_filter`], whose body userspace replaces at load. A
//! matching call is sent to userspace as one [`Event`] through the `EVENTS`
//! perf event array; with `-w` ([`CONFIG_CAPTURE`], checked only after the
//! match) the same record also carries the packet's first bytes
//! ([`CaptureRecord`]).
//!
//! Programs come in families, one program per skb argument position, because
//! the position must be a compile-time constant for the verifier:
//! `kprobe_skb_N` (for kprobes and kprobe-multi links), `fentry_skb_N`,
//! `fexit_skb_N`, and `tp_p{N}_s{slot}`. The list of programs, their names
//! and positions, is ipft-common's `programs::CATALOG`: build.rs turns each entry into an
//! invocation of one of the macros below.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

use aya_ebpf::{
    bindings::BPF_F_CURRENT_CPU,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_func_ip, bpf_get_smp_processor_id, bpf_get_stackid,
        bpf_ktime_get_ns, bpf_perf_event_output, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        generated::bpf_probe_read_kernel as read_kernel_raw,
    },
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map},
    maps::{Array, HashMap, PerCpuArray, PerfEventArray, StackTrace},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use ipft_common::{
    tracepoint_id, ArgSlot, Call, Capture, CaptureOffsets, CaptureRecord, Cloning, Config, Event,
    Offsets, PlaceOffsets, CAPTURE_SIZE, CONFIG_CAPTURE, CONFIG_DEV, CONFIG_FILTER, CONFIG_GRAPH,
    CONFIG_NETNS, CONFIG_RDONLY_CAST, CONFIG_STACK, CONFIG_STACK_DROPS, CONFIG_TRACK, ENTERED_MAX,
    EVENT_CAPTURE, EVENT_CLONE, EVENT_DROP_REASON, EVENT_RETURN, EVENT_SIZE, EVENT_STACK,
    KFUNC_RDONLY_CAST, LINK_ETHERNET, LINK_NONE, LINK_RAW, SNAPLEN_MAX, STACKS_MAX,
    TP_KFREE_SKB_ID, TRACKED_MAX,
};

/// Set by userspace before loading; read-only, so the verifier sees constants.
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    mark: 0,
    mask: 0,
    flags: 0,
    snaplen: 0,
    offsets: Offsets {
        skb_mark: 0,
        skb_len: 0,
        skb_data_len: 0,
        skb_protocol: 0,
        skb_head: 0,
        skb_network_header: 0,
        skb_end: 0,
        skb_dev: 0,
        dev_name: 0,
        shinfo_gso_size: 0,
        shinfo_gso_segs: 0,
        shinfo_gso_type: 0,
    },
    capture: CaptureOffsets {
        skb_mac_header: 0,
        skb_data: 0,
        skb_tail: 0,
    },
    place: PlaceOffsets {
        dev_ifindex: 0,
        dev_net: 0,
        net_inum: 0,
        skb_sk: 0,
        sk_net: 0,
    },
    skb_btf_id: 0,
    rdonly_cast_btf_id: 0,
    netns: 0,
    ifindex: 0,
};

#[map]
static EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

/// `--track`: skbs that matched once, followed until they are freed.
#[map]
static TRACKED: HashMap<u64, u8> = HashMap::with_max_entries(TRACKED_MAX, 0);

/// `--track`: at least how many skbs `TRACKED` holds (raised before an
/// insert, lowered after a removal, so never below). The non-matching path
/// reads it and skips the hash look-up while it is 0: nothing is followed
/// most of the time, the packets looked for being few and short-lived, and
/// the look-up costs more than the rest of that path. A global (a word of
/// the object's `.bss` map) rather than a one-entry array: reading it is a
/// load from the map value's address, where an array took a look-up of a
/// dozen instructions on every call.
static mut TRACKED_COUNT: u64 = 0;

/// `--track`: identities of functions that free an skb (filled by userspace).
#[map]
static FREES: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// Events the perf buffer had no room for, per CPU. The kernel's own
/// PERF_RECORD_LOST reaches userspace only when a later event fits, so a
/// loss at the end of a burst would go unreported without this.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sends an event to userspace, counting it in `LOST` when it does not fit.
#[inline(always)]
fn send<C: EbpfContext>(ctx: &C, event: &Event) {
    output(
        ctx.as_ptr(),
        (event as *const Event).cast(),
        core::mem::size_of::<Event>() as u64,
    );
}

/// Writes `size` bytes at `data` as one perf record, counting it in `LOST`
/// when it does not fit.
#[inline(always)]
fn output(ctx: *mut core::ffi::c_void, data: *const u8, size: u64) {
    let ret = unsafe {
        bpf_perf_event_output(
            ctx,
            core::ptr::addr_of!(EVENTS).cast_mut().cast(),
            BPF_F_CURRENT_CPU as u64,
            data.cast_mut().cast(),
            size,
        )
    };
    if ret != 0 {
        count(&LOST);
    }
}

#[inline(always)]
fn count(counter: &PerCpuArray<u64>) {
    if let Some(n) = counter.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
}

/// `-w`: how many captures can be assembled at once on one CPU: a program
/// in task context, interrupted by one in softirq, by one in hard IRQ, by
/// one in NMI. Each level has its own buffer in `CAPTURES`.
const CAPTURE_LEVELS: u32 = 4;

/// `-w`: each CPU's records being assembled, one per nesting level (a
/// record does not fit the 512-byte stack).
#[map]
static CAPTURES: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(CAPTURE_LEVELS, 0);

/// `-w`: how many captures this CPU is assembling now (the level of the
/// next one). Interrupts nest, so each level's increment is undone before
/// the level below resumes.
#[map]
static CAPTURE_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// function_graph: traced calls in flight, and their skbs, so that their
/// returns are reported (see [`entered`], [`returned`]).
#[map]
static ENTERED: HashMap<Call, u64> = HashMap::with_max_entries(ENTERED_MAX, 0);

/// Kernel stacks of traced calls (`--stack`, and fentry's drop programs,
/// whose caller userspace reads from the stack). Userspace shrinks it to
/// `STACKS_DROPS_ONLY` entries without `--stack`.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX, 0);

/// `--track`: identities of functions that clone or copy an skb.
#[map]
static CLONERS: HashMap<u64, u8> = HashMap::with_max_entries(64, 0);

/// kprobe-multi: where the skb and drop reason of `kprobe_skb_any`'s
/// functions are (`programs::args`), by function identity: first in the
/// identity's slot (an array look-up the verifier inlines), else, for the
/// few identities whose slot another took, in `ARGS` (a hash look-up).
#[map]
static ARG_SLOTS: Array<ArgSlot> = Array::with_max_entries(ipft_common::ARG_SLOTS, 0);
#[map]
static ARGS: HashMap<u64, u16> = HashMap::with_max_entries(4096, 0);

/// `--track` on kprobes: a cloning call in flight, from entry to return.
#[map]
static CLONING: HashMap<u64, Cloning> = HashMap::with_max_entries(4096, 0);

/// `--track`: how many skbs could not be tracked because `TRACKED` was full.
#[map]
static TRACK_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reads one field of `CONFIG`. Volatile, so the compiler keeps the load
/// from the read-only map (whose value the verifier then knows) instead of
/// folding in the zero it was compiled with; one field at a time, so the hot
/// path loads only what it uses.
macro_rules! config {
    ($($field:tt)+) => {{
        // Used inside `unsafe` blocks too, where its own is redundant.
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.$($field)+)) };
        value
    }};
}

#[inline(always)]
fn read<T>(addr: u64) -> T
where
    T: Default,
{
    unsafe { bpf_probe_read_kernel(addr as *const T) }.unwrap_or_default()
}

/// `bpf_rdonly_cast(obj, btf_id)`: `obj` as a read-only pointer to the
/// vmlinux type `btf_id`, whose loads the verifier turns into faulting-safe
/// direct loads. A call of the placeholder helper [`KFUNC_RDONLY_CAST`]
/// (like aya's helpers, a transmuted id compiles to `call imm`), which
/// userspace rewrites into the kfunc call before loading.
#[inline(always)]
unsafe fn rdonly_cast(obj: u64, btf_id: u32) -> *const u8 {
    let cast: unsafe extern "C" fn(u64, u32) -> *const u8 =
        unsafe { core::mem::transmute(KFUNC_RDONLY_CAST as usize) };
    unsafe { cast(obj, btf_id) }
}

/// `skb->mark`. The flag is a constant to the verifier (frozen CONFIG), so
/// it checks only the branch taken: the kfunc call is never verified on
/// kernels without it, the helper call never where the kfunc is used.
#[inline(always)]
fn mark_of(skb: u64, flags: u32) -> Option<u32> {
    let offset = config!(offsets.skb_mark);
    if flags & CONFIG_RDONLY_CAST != 0 {
        // A plain load through the cast pointer: ~19 instructions against
        // ~95 for bpf_probe_read_kernel. The offset is a known constant, so
        // the verifier folds it into the pointer's fixed offset and checks
        // it against sk_buff's BTF.
        let base = unsafe { rdonly_cast(skb, config!(skb_btf_id)) };
        return Some(unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<u32>()) });
    }
    let mark_ptr = (skb + offset as u64) as *const u32;
    unsafe { bpf_probe_read_kernel(mark_ptr) }.ok()
}

/// The hot path: one read of `skb->mark`, one compare; then, with
/// `--netns`/`--dev`, the device's (or socket's) namespace and index; then,
/// with `-f`, the filter. Without `-m` the mask is 0 and no mark is read.
/// The verifier knows `CONFIG`, so a test that is off costs nothing but
/// its load: `flags` and the mask are loaded once.
#[inline(always)]
fn matches(skb: u64, flags: u32) -> bool {
    let mask = config!(mask);
    if mask != 0 {
        match mark_of(skb, flags) {
            Some(mark) if mark & mask == config!(mark) => {}
            _ => return false,
        }
    }
    if flags & CONFIG_NETNS != 0 && !placed(skb) {
        return false;
    }
    flags & CONFIG_FILTER == 0 || ipft_filter(skb) != 0
}

/// `--netns`, `--dev`: whether the packet is on the selected device (with
/// `--dev`) in the selected namespace. A packet without a device is in its
/// socket's namespace (a local sender's packet before its output function
/// gives it one), and on no device: `--dev` does not match it.
#[inline(always)]
fn placed(skb: u64) -> bool {
    if config!(flags) & CONFIG_RDONLY_CAST != 0 {
        return placed_cast(skb);
    }
    let dev: u64 = read(skb + config!(offsets.skb_dev) as u64);
    if dev == 0 {
        return config!(flags) & CONFIG_DEV == 0 && in_socket_netns(skb);
    }
    if config!(flags) & CONFIG_DEV != 0 {
        let ifindex: u32 = read(dev + config!(place.dev_ifindex) as u64);
        if ifindex != config!(ifindex) {
            return false;
        }
    }
    let net: u64 = read(dev + config!(place.dev_net) as u64);
    net != 0 && read::<u32>(net + config!(place.net_inum) as u64) == config!(netns)
}

/// [`placed`] with plain loads through `bpf_rdonly_cast`: the verifier
/// follows the pointers by BTF (`sk_buff.dev` is a `net_device *`,
/// `nd_net.net` a `net *`) and makes each load faulting-safe, so the walk
/// costs three loads instead of three helper calls.
#[inline(always)]
fn placed_cast(skb: u64) -> bool {
    let btf_id = config!(skb_btf_id);
    let base = unsafe { rdonly_cast(skb, btf_id) };
    let dev: *const u8 = load(base, config!(offsets.skb_dev));
    if dev.is_null() {
        return config!(flags) & CONFIG_DEV == 0 && in_socket_netns(skb);
    }
    if config!(flags) & CONFIG_DEV != 0
        && load::<u32>(dev, config!(place.dev_ifindex)) != config!(ifindex)
    {
        return false;
    }
    let net: *const u8 = load(dev, config!(place.dev_net));
    load::<u32>(net, config!(place.net_inum)) == config!(netns)
}

/// A plain load of the field at `offset` in a `bpf_rdonly_cast` object (or
/// one reached from it), which the verifier makes faulting-safe.
#[inline(always)]
fn load<T>(object: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(object.add(offset as usize).cast::<T>()) }
}

/// Whether the skb's socket is in the selected namespace: read with
/// `bpf_probe_read_kernel`, because `sk_buff.sk` shares a union with
/// `ip_defrag_offset` (a fragment being reassembled holds a number there),
/// so it is not a pointer the verifier would follow.
#[inline(never)]
fn in_socket_netns(skb: u64) -> bool {
    let sk: u64 = read(skb + config!(place.skb_sk) as u64);
    if sk == 0 {
        return false;
    }
    let net: u64 = read(sk + config!(place.sk_net) as u64);
    net != 0 && read::<u32>(net + config!(place.net_inum) as u64) == config!(netns)
}

/// `-f`: whether the packet of `skb` matches the filter (non-zero). This
/// body is a placeholder: userspace replaces it with the translation of the
/// filter expression when it loads the programs (ipft's
/// `attach/programs.rs`, by this name: `ipft_common::FILTER_FUNCTION`).
/// Never inlined, so that it stays one function to replace; `black_box`
/// keeps the optimiser from seeing through it and folding its result into
/// the callers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ipft_filter(skb: u64) -> u64 {
    core::hint::black_box(skb)
}

/// Whether this call is traced: a matching mark, or (`--track`) an skb that
/// matched before. Tracking costs a map look-up only when enabled.
#[inline(always)]
fn wanted(skb: u64) -> bool {
    let flags = config!(flags);
    let track = flags & CONFIG_TRACK != 0;
    if matches(skb, flags) {
        // A NULL skb is no packet. Tested only here: the tests before read
        // it fault-safely (0, or a failed helper read), so the path every
        // unmatched call takes goes without the test.
        if skb == 0 {
            return false;
        }
        if track && !is_tracked(skb) {
            track_skb(skb);
        }
        return true;
    }
    track && tracking_any() && skb != 0 && is_tracked(skb)
}

/// Whether `TRACKED` holds `skb`. The key is a copy made here: a look-up
/// takes its key's address, and the compiler stores an address-taken
/// variable to the stack where it is defined, which for `skb` was every
/// program's entry, on the path of every call.
#[inline(always)]
fn is_tracked(skb: u64) -> bool {
    let key = core::hint::black_box(skb);
    unsafe { TRACKED.get(&key) }.is_some()
}

/// Whether `TRACKED` may hold any skb ([`TRACKED_COUNT`]).
#[inline(always)]
fn tracking_any() -> bool {
    // Volatile: other CPUs change it, behind the compiler's back.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(TRACKED_COUNT)) != 0 }
}

/// Adds `delta` to [`TRACKED_COUNT`], atomically: every CPU updates it.
#[inline(always)]
fn count_tracked(delta: i64) {
    let n = core::ptr::addr_of_mut!(TRACKED_COUNT);
    // BPF_ATOMIC add (the `lock xadd` of eBPF's first instruction set): the
    // bpfel target offers no atomic types, and its result is unused.
    unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) n, in(reg) delta) };
}

/// Follows `skb` from now on: counted first, so that the count is never
/// below what the map holds; uncounted when the map is full.
#[inline(always)]
fn track_skb(skb: u64) {
    count_tracked(1);
    if TRACKED.insert(&core::hint::black_box(skb), &1, 0).is_err() {
        count_tracked(-1);
        if let Some(full) = TRACK_FULL.get_ptr_mut(0) {
            unsafe { *full += 1 };
        }
    }
}

/// Fills the packet snapshot of `event` from the skb.
#[inline(always)]
fn snapshot(o: &Offsets, skb: u64, event: &mut Event) {
    event.len = read(skb + o.skb_len as u64);
    event.data_len = read(skb + o.skb_data_len as u64);
    event.mark = read(skb + o.skb_mark as u64);
    event.protocol = read(skb + o.skb_protocol as u64);
    let head: u64 = read(skb + o.skb_head as u64);
    let network: u16 = read(skb + o.skb_network_header as u64);
    event.network_header = network;
    if head != 0 && network != 0xffff {
        let _ = unsafe {
            bpf_probe_read_kernel_buf((head + network as u64) as *const u8, &mut event.headers)
        };
    }
    let end: u32 = read(skb + o.skb_end as u64);
    if head != 0 {
        let shinfo = head + end as u64;
        event.gso_size = read(shinfo + o.shinfo_gso_size as u64);
        event.gso_segs = read(shinfo + o.shinfo_gso_segs as u64);
        event.gso_type = read(shinfo + o.shinfo_gso_type as u64);
    }
    let dev: u64 = read(skb + o.skb_dev as u64);
    if dev != 0 {
        let _ = unsafe {
            bpf_probe_read_kernel_buf((dev + o.dev_name as u64) as *const u8, &mut event.dev)
        };
    }
}

/// An event for a call of `func` on `skb`, stamped now, on this CPU.
#[inline(always)]
fn new_event(skb: u64, func: u64, flags: u32) -> Event {
    let mut event = Event::zeroed();
    event.skb = skb;
    event.tstamp = unsafe { bpf_ktime_get_ns() };
    event.func = func;
    event.cpu = unsafe { bpf_get_smp_processor_id() };
    event.flags = flags;
    event
}

/// Where a traced call came from: how the program finds its caller, and
/// whether its calls free an skb with a drop reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Site {
    /// No caller read: the rows of ordinary functions and tracepoints.
    Plain,
    /// A kprobe: the return address at the top of the stack at entry.
    Kprobe,
    /// A kprobe on a function with a drop reason.
    KprobeDrop,
    /// An fentry program on a function with a drop reason: the caller is
    /// in the stack it records.
    FentryDrop,
    /// The `kfree_skb` tracepoint: its `location` argument.
    Location(u64),
}

impl Site {
    fn drops(self) -> bool {
        matches!(
            self,
            Site::KprobeDrop | Site::FentryDrop | Site::Location(_)
        )
    }
}

/// The return address a kprobe's function will go back to: at the top of
/// the stack, as the function is entered (kprobe-multi and ftrace-based
/// kprobes fill `sp` the same way).
#[inline(always)]
fn return_address(ctx: *mut core::ffi::c_void) -> u64 {
    read(stack_pointer(ctx))
}

/// A kprobe's `regs->sp`.
#[inline(always)]
fn stack_pointer(ctx: *mut core::ffi::c_void) -> u64 {
    let regs = ctx as *const aya_ebpf::bindings::pt_regs;
    // Direct context access: kprobe programs may read pt_regs.
    unsafe { (*regs).rsp }
}

/// Register argument `n` (0-based) of a kprobe, `n` known only at run
/// time. The verifier takes only loads at a constant offset from the
/// context, and the compiler would turn a `match` of plain loads into one
/// load at a computed offset: each arm is one load, written out.
#[inline(always)]
fn register_argument(ctx: &ProbeContext, n: u8) -> Option<u64> {
    use aya_ebpf::bindings::pt_regs;
    use core::mem::offset_of;
    macro_rules! load {
        ($field:ident) => {{
            let value: u64;
            // SAFETY: a load from the kprobe's pt_regs, which the verifier checks.
            unsafe {
                core::arch::asm!(
                    "{v} = *(u64 *)({regs} + {off})",
                    regs = in(reg) ctx.as_ptr(),
                    off = const offset_of!(pt_regs, $field),
                    v = out(reg) value,
                )
            };
            value
        }};
    }
    Some(match n {
        0 => load!(rdi),
        1 => load!(rsi),
        2 => load!(rdx),
        3 => load!(rcx),
        4 => load!(r8),
        5 => load!(r9),
        _ => return None,
    })
}

/// Fills the caller and, when asked for, the stack of a matched call.
#[inline(always)]
fn locate<C: EbpfContext>(ctx: &C, site: Site, event: &mut Event) {
    event.caller = match site {
        Site::Kprobe | Site::KprobeDrop => return_address(ctx.as_ptr()),
        Site::Location(location) => location,
        Site::Plain | Site::FentryDrop => 0,
    };
    let flags = config!(flags);
    let stack = flags & CONFIG_STACK != 0
        || (site.drops() && flags & CONFIG_STACK_DROPS != 0)
        || site == Site::FentryDrop;
    if stack {
        let map = core::ptr::addr_of!(STACKS).cast_mut().cast();
        let id = unsafe { bpf_get_stackid(ctx.as_ptr(), map, 0) };
        if id >= 0 {
            event.stack_id = id as u32;
            event.flags |= EVENT_STACK;
        }
    }
}

/// Traces one call: filter, then send the event; forget a tracked skb once
/// a freeing function saw it.
#[inline(always)]
fn trace<C: EbpfContext>(
    ctx: &C,
    skb: u64,
    func: impl FnOnce() -> u64,
    flags: u32,
    reason: u32,
    site: Site,
) {
    if !wanted(skb) {
        return;
    }
    // Asked only now: the non-matching path makes no helper call but the
    // mark read (none at all with bpf_rdonly_cast).
    let func = func();
    let mut event = new_event(skb, func, flags);
    event.drop_reason = reason;
    locate(ctx, site, &mut event);
    let offsets = config!(offsets);
    snapshot(&offsets, skb, &mut event);
    send_snapshot(ctx, skb, &event);
    if config!(flags) & CONFIG_GRAPH != 0 {
        entered(ctx, skb, func, site);
    }
    if config!(flags) & CONFIG_TRACK != 0 {
        if unsafe { FREES.get(&func) }.is_some() {
            if TRACKED.remove(&core::hint::black_box(skb)).is_ok() {
                count_tracked(-1);
            }
        } else if unsafe { CLONERS.get(&func) }.is_some() {
            // Its return probe reports the new skb.
            let cloning = Cloning { parent: skb, func };
            let _ = CLONING.insert(&bpf_get_current_pid_tgid(), &cloning, 0);
        }
    }
}

/// function_graph: remembers a traced call until it returns, keyed by its
/// frame (see [`Call`]): the skb for fentry, the address of the return
/// address for kprobes (their return probes have no skb).
#[inline(always)]
fn entered<C: EbpfContext>(ctx: &C, skb: u64, func: u64, site: Site) {
    let frame = match site {
        Site::Kprobe | Site::KprobeDrop => stack_pointer(ctx.as_ptr()),
        _ => skb,
    };
    let call = Call {
        frame,
        func,
        pid_tgid: bpf_get_current_pid_tgid(),
    };
    let _ = ENTERED.insert(&call, &core::hint::black_box(skb), 0);
}

/// function_graph: a function returns; reported when its call was traced
/// ([`entered`]). Decided by the `ENTERED` map, not by the mark: the skb
/// may have been freed (and its memory reused) inside the call. The event
/// carries no snapshot for the same reason, only the return value.
#[inline(always)]
fn returned<C: EbpfContext>(ctx: &C, frame: u64, retval: u64) {
    if frame == 0 {
        return;
    }
    let func = func_ip(ctx);
    let call = Call {
        frame,
        func,
        pid_tgid: bpf_get_current_pid_tgid(),
    };
    let Some(skb) = (unsafe { ENTERED.get(&call) }).copied() else {
        return;
    };
    let _ = ENTERED.remove(&call);
    let mut event = new_event(skb, func, EVENT_RETURN);
    event.network_header = 0xffff;
    event.retval = retval;
    send(ctx, &event);
}

/// `--track`: a cloning function returned `child`, a copy of `parent`:
/// track the child and report it as a new packet of that family.
#[inline(always)]
fn cloned<C: EbpfContext>(ctx: &C, parent: u64, child: u64, func: u64) {
    if child == 0 {
        return;
    }
    track_skb(child);
    let mut event = new_event(child, func, EVENT_CLONE | EVENT_RETURN);
    event.parent = parent;
    let offsets = config!(offsets);
    snapshot(&offsets, child, &mut event);
    send_snapshot(ctx, child, &event);
}

/// Sends a matched call's event, with the packet's bytes under `-w`.
#[inline(always)]
fn send_snapshot<C: EbpfContext>(ctx: &C, skb: u64, event: &Event) {
    if config!(flags) & CONFIG_CAPTURE == 0 {
        send(ctx, event);
    } else {
        send_captured(ctx.as_ptr(), skb, event);
    }
}

/// `-w`: sends `event` with the packet's bytes. A function of its own (a
/// BPF subprogram): inlined, it changes how the compiler lays out the event
/// on the path without `-w` too.
#[inline(never)]
fn send_captured(ctx: *mut core::ffi::c_void, skb: u64, event: &Event) {
    let Some(depth) = CAPTURE_DEPTH.get_ptr_mut(0) else {
        return;
    };
    let level = unsafe { *depth };
    let Some(record) = CAPTURES
        .get_ptr_mut(level)
        .filter(|_| level < CAPTURE_LEVELS)
    else {
        // Nested deeper than the buffers: the record is lost.
        count(&LOST);
        return;
    };
    unsafe { *depth = level + 1 };
    // SAFETY: this CPU's buffer of this nesting level: nothing else uses it
    // until this program returns.
    let record = unsafe { &mut *record };
    record.event = *event;
    record.event.flags |= EVENT_CAPTURE;
    let captured = capture(skb, event.network_header, record);
    let size = (EVENT_SIZE + CAPTURE_SIZE) as u64 + captured as u64;
    output(ctx, (record as *const CaptureRecord).cast(), size);
    unsafe { *depth = level };
}

/// `-w`: where the frame starts. At the MAC header when it precedes the
/// network header by an Ethernet header's length or more (a tunnel's stale
/// inner MAC header lies after the outer network header); else at the
/// network header; else nowhere.
#[inline(always)]
fn frame_start(mac: u16, network: u16) -> (u16, u16) {
    const UNSET: u16 = 0xffff;
    const ETH_HLEN: u16 = 14;
    let ethernet = mac != UNSET && (network == UNSET || network >= mac + ETH_HLEN);
    if ethernet {
        (mac, LINK_ETHERNET)
    } else if network != UNSET {
        (network, LINK_RAW)
    } else {
        (0, LINK_NONE)
    }
}

/// `-w`: fills `record.capture` and copies the frame's first bytes of
/// linear data into `record.bytes`; returns how many.
#[inline(always)]
fn capture(skb: u64, network: u16, record: &mut CaptureRecord) -> u32 {
    let c = config!(capture);
    let p = config!(place);
    let head: u64 = read(skb + config!(offsets.skb_head) as u64);
    let data: u64 = read(skb + c.skb_data as u64);
    let tail: u32 = read(skb + c.skb_tail as u64);
    let mac: u16 = read(skb + c.skb_mac_header as u64);
    let (start, link) = frame_start(mac, network);
    let dev: u64 = read(skb + config!(offsets.skb_dev) as u64);
    let (mut netns, mut ifindex) = (0, 0);
    if dev != 0 {
        ifindex = read(dev + p.dev_ifindex as u64);
        let net: u64 = read(dev + p.dev_net as u64);
        if net != 0 {
            netns = read(net + p.net_inum as u64);
        }
    }
    let mut captured = 0;
    if link != LINK_NONE && head != 0 && tail > start as u32 {
        captured = (tail - start as u32).min(config!(snaplen));
        // Says to the verifier what userspace promised: the buffer's size.
        if captured > SNAPLEN_MAX {
            captured = SNAPLEN_MAX;
        }
        let src = (head + start as u64) as *const core::ffi::c_void;
        let dst = record.bytes.as_mut_ptr().cast();
        if unsafe { read_kernel_raw(dst, captured, src) } != 0 {
            captured = 0;
        }
    }
    record.capture = Capture {
        netns,
        ifindex,
        data: data.wrapping_sub(head) as u32,
        tail,
        mac_header: mac,
        start,
        link,
        captured: captured as u16,
    };
    captured
}

#[inline(always)]
fn func_ip<C: EbpfContext>(ctx: &C) -> u64 {
    unsafe { bpf_get_func_ip(ctx.as_ptr()) }
}

// The programs. One macro per shape of program; build.rs invokes them once
// per entry of `ipft_common::programs::CATALOG` (the file included at the
// end), with the entry's name and argument positions.

/// kprobe with the skb at argument `$pos`.
macro_rules! kprobe_skb {
    ($name:ident, $pos:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            if let Some(skb) = ctx.arg::<u64>($pos) {
                trace(&ctx, skb, || func_ip(&ctx), 0, 0, Site::Kprobe);
            }
            0
        }
    };
}

/// kprobe for functions that also take an `enum skb_drop_reason`.
macro_rules! kprobe_skb_reason {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            if let (Some(skb), Some(reason)) = (ctx.arg::<u64>($pos), ctx.arg::<u64>($reason)) {
                trace(
                    &ctx,
                    skb,
                    || func_ip(&ctx),
                    EVENT_DROP_REASON,
                    reason as u32,
                    Site::KprobeDrop,
                );
            }
            0
        }
    };
}

/// Where `kprobe_skb_any`'s function `func` has its skb and drop reason.
#[inline(always)]
fn args_of(func: u64) -> Option<u16> {
    match ARG_SLOTS.get(ipft_common::arg_slot(func)) {
        Some(slot) if slot.func == func => Some(slot.args),
        _ => unsafe { ARGS.get(&core::hint::black_box(func)) }.copied(),
    }
}

/// kprobe-multi: the functions of rare argument layouts, whose positions
/// are in `ARGS` by function identity (see `programs::KPROBE_SKB_ANY`).
macro_rules! kprobe_skb_any {
    ($name:ident) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            let func = func_ip(&ctx);
            let Some(args) = args_of(func) else {
                return 0;
            };
            let (skb_pos, reason_pos) = ipft_common::programs::args_positions(args);
            let Some(skb) = register_argument(&ctx, skb_pos) else {
                return 0;
            };
            match reason_pos {
                None => trace(&ctx, skb, || func, 0, 0, Site::Kprobe),
                Some(pos) => {
                    if let Some(reason) = register_argument(&ctx, pos) {
                        let flags = EVENT_DROP_REASON;
                        trace(&ctx, skb, || func, flags, reason as u32, Site::KprobeDrop);
                    }
                }
            }
            0
        }
    };
}

/// `--track` with kprobes: the return of skb_clone, skb_copy, … whose entry
/// saw a traced skb.
macro_rules! kretprobe_clone {
    ($name:ident) => {
        #[kretprobe]
        pub fn $name(ctx: RetProbeContext) -> u32 {
            let key = bpf_get_current_pid_tgid();
            if let Some(cloning) = unsafe { CLONING.get(&key) } {
                let cloning = *cloning;
                let _ = CLONING.remove(&key);
                cloned(&ctx, cloning.parent, ctx.ret::<u64>(), cloning.func);
            }
            0
        }
    };
}

/// fentry with the skb at argument `$pos`.
macro_rules! fentry_skb {
    ($name:ident, $pos:expr) => {
        #[fentry]
        pub fn $name(ctx: FEntryContext) -> i32 {
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || func_ip(&ctx),
                0,
                0,
                Site::Plain,
            );
            0
        }
    };
}

/// fentry for functions that also take an `enum skb_drop_reason`.
macro_rules! fentry_skb_reason {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[fentry]
        pub fn $name(ctx: FEntryContext) -> i32 {
            let reason = ctx.arg::<u64>($reason) as u32;
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || func_ip(&ctx),
                EVENT_DROP_REASON,
                reason,
                Site::FentryDrop,
            );
            0
        }
    };
}

/// function_graph: fexit with the skb at argument `$pos`. The return value
/// comes from `bpf_get_func_ret` (5.17+).
macro_rules! fexit_skb {
    ($name:ident, $pos:expr) => {
        #[fexit]
        pub fn $name(ctx: FExitContext) -> i32 {
            let retval = ctx.ret::<u64>().unwrap_or(0);
            returned(&ctx, ctx.arg::<u64>($pos), retval);
            0
        }
    };
}

/// function_graph with kprobes and kprobe-multi: the return of any traced
/// function. The return trampoline reports `sp` just past the return
/// address, which the entry's `sp` pointed at: the call's frame is 8 below.
macro_rules! kretprobe_graph {
    ($name:ident) => {
        #[kretprobe]
        pub fn $name(ctx: RetProbeContext) -> u32 {
            let regs = ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs;
            // Direct context access: kprobe programs may read pt_regs.
            let (sp, rax) = unsafe { ((*regs).rsp, (*regs).rax) };
            returned(&ctx, sp.wrapping_sub(8), rax);
            0
        }
    };
}

/// `--track` with ftrace: the return of skb_clone, skb_copy, … (the skb is
/// argument `$pos`).
macro_rules! fexit_clone {
    ($name:ident, $pos:expr) => {
        #[fexit]
        pub fn $name(ctx: FExitContext) -> i32 {
            let parent = ctx.arg::<u64>($pos);
            if wanted(parent) {
                if let Ok(child) = ctx.ret::<u64>() {
                    cloned(&ctx, parent, child, func_ip(&ctx));
                }
            }
            0
        }
    };
}

/// One `tp_btf` program per (position, slot); its identity is the slot.
macro_rules! tp_slot {
    ($name:ident, $pos:expr, $slot:expr) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = "tp_btf")]
        pub fn $name(ctx: *mut core::ffi::c_void) -> i32 {
            let ctx = BtfTracePointContext::new(ctx);
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || tracepoint_id($pos, $slot),
                0,
                0,
                Site::Plain,
            );
            0
        }
    };
}

/// The `kfree_skb` tracepoint with its drop reason and where it was freed:
/// `TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`.
macro_rules! tp_kfree_skb {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[btf_tracepoint]
        pub fn $name(ctx: BtfTracePointContext) -> i32 {
            let reason = ctx.arg::<u64>($reason) as u32;
            let location = ctx.arg::<u64>(1);
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || TP_KFREE_SKB_ID,
                EVENT_DROP_REASON,
                reason,
                Site::Location(location),
            );
            0
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
