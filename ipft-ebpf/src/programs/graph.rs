//! function_graph: each traced call is remembered in `ENTERED` until it
//! returns, and its return reported, by fexit or by a kretprobe.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, EbpfContext};
use ipft_common::{Call, EVENT_RETURN};

use crate::{
    maps::ENTERED,
    output::send,
    snapshot::new_event,
    trace::{func_ip, stack_pointer, Site},
};

/// function_graph: remembers a traced call until it returns, keyed by its
/// frame (see [`Call`]): the skb for fentry, the address of the return
/// address for kprobes (their return probes have no skb).
#[inline(always)]
pub(crate) fn entered<C: EbpfContext>(ctx: &C, skb: u64, func: u64, site: Site) {
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
pub(crate) fn returned<C: EbpfContext>(ctx: &C, frame: u64, retval: u64) {
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
