//! What every entry program does with its call: the checks, then the
//! event with its caller (and stack), sent; and the bookkeeping of
//! function_graph and `--track`.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_func_ip, bpf_get_stackid},
    EbpfContext,
};
use ipft_common::{
    Cloning, Event, CONFIG_GRAPH, CONFIG_STACK, CONFIG_STACK_DROPS, CONFIG_TRACK, EVENT_STACK,
};

use crate::{
    kmem::read,
    maps::{CLONERS, CLONING, FREES, STACKS, TRACKED},
    output::send_snapshot,
    predicates::wanted,
    programs::graph::entered,
    snapshot::{new_event, snapshot},
    track::count_tracked,
};

/// Where a traced call came from: how the program finds its caller, and
/// whether its calls free an skb with a drop reason.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
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
pub(crate) fn stack_pointer(ctx: *mut core::ffi::c_void) -> u64 {
    let regs = ctx as *const aya_ebpf::bindings::pt_regs;
    // Direct context access: kprobe programs may read pt_regs.
    unsafe { (*regs).rsp }
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
pub(crate) fn trace<C: EbpfContext>(
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

#[inline(always)]
pub(crate) fn func_ip<C: EbpfContext>(ctx: &C) -> u64 {
    unsafe { bpf_get_func_ip(ctx.as_ptr()) }
}
