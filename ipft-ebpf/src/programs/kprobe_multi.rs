//! kprobe-multi: one program for the functions of rare argument layouts,
//! which finds their skb and drop reason by function identity.
use aya_ebpf::{programs::ProbeContext, EbpfContext};

use crate::maps::{ARGS, ARG_SLOTS};

/// Register argument `n` (0-based) of a kprobe, `n` known only at run
/// time. The verifier takes only loads at a constant offset from the
/// context, and the compiler would turn a `match` of plain loads into one
/// load at a computed offset: each arm is one load, written out.
#[inline(always)]
pub(crate) fn register_argument(ctx: &ProbeContext, n: u8) -> Option<u64> {
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

/// Where `kprobe_skb_any`'s function `func` has its skb and drop reason.
#[inline(always)]
pub(crate) fn args_of(func: u64) -> Option<u16> {
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
