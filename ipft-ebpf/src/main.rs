//! ipft's eBPF programs.
//!
//! Every program does the same thing: take the `struct sk_buff *` argument,
//! read `skb->mark` at the offset userspace found in BTF, and return at once
//! unless `(mark & mask) == mark_filter`. A matching call is sent to
//! userspace as one [`Event`] through the `EVENTS` perf event array.
//!
//! Programs come in families, one program per skb argument position, because
//! the position must be a compile-time constant for the verifier:
//! `kprobe_skb_N`, `fentry_skb_N`, `fexit_skb_N`, and `tp_p{N}_s{slot}`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_func_ip, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{fentry, fexit, kprobe, map},
    maps::PerfEventArray,
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext},
    EbpfContext,
};
use ipft_common::{tracepoint_id, Config, Event, EVENT_RETURN};

const _: () = assert!(ipft_common::TP_POSITIONS == 5 && ipft_common::TP_SLOTS == 32);

/// Set by userspace before loading; read-only, so the verifier sees constants.
#[unsafe(no_mangle)]
static CONFIG: Config = Config { mark: 0, mask: 0, mark_offset: 0, _reserved: 0 };

#[map]
static EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

/// The hot path: one read of `skb->mark`, one compare.
#[inline(always)]
fn matches(skb: u64) -> bool {
    let config = unsafe { core::ptr::read_volatile(&CONFIG) };
    let mark_ptr = (skb + config.mark_offset as u64) as *const u32;
    match unsafe { bpf_probe_read_kernel(mark_ptr) } {
        Ok(mark) => mark & config.mask == config.mark,
        Err(_) => false,
    }
}

#[inline(always)]
fn emit<C: EbpfContext>(ctx: &C, skb: u64, func: u64, flags: u32) {
    let event = Event {
        skb,
        tstamp: unsafe { bpf_ktime_get_ns() },
        func,
        cpu: unsafe { bpf_get_smp_processor_id() },
        flags,
    };
    EVENTS.output(ctx, &event, 0);
}

#[inline(always)]
fn on_kprobe(ctx: ProbeContext, pos: usize) -> u32 {
    let skb: u64 = match ctx.arg(pos) {
        Some(skb) => skb,
        None => return 0,
    };
    if skb != 0 && matches(skb) {
        emit(&ctx, skb, unsafe { bpf_get_func_ip(ctx.as_ptr()) }, 0);
    }
    0
}

#[inline(always)]
fn on_ftrace<C: EbpfContext>(ctx: &C, skb: u64, flags: u32) -> i32 {
    if skb != 0 && matches(skb) {
        emit(ctx, skb, unsafe { bpf_get_func_ip(ctx.as_ptr()) }, flags);
    }
    0
}

macro_rules! kprobe_pos {
    ($name:ident, $pos:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            on_kprobe(ctx, $pos)
        }
    };
}

macro_rules! ftrace_pos {
    ($entry:ident, $exit:ident, $pos:expr) => {
        #[fentry]
        pub fn $entry(ctx: FEntryContext) -> i32 {
            on_ftrace(&ctx, ctx.arg::<u64>($pos), 0)
        }
        #[fexit]
        pub fn $exit(ctx: FExitContext) -> i32 {
            on_ftrace(&ctx, ctx.arg::<u64>($pos), EVENT_RETURN)
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
            let skb: u64 = ctx.arg($pos);
            if skb != 0 && matches(skb) {
                emit(&ctx, skb, tracepoint_id($pos, $slot), 0);
            }
            0
        }
    };
}

kprobe_pos!(kprobe_skb_0, 0);
kprobe_pos!(kprobe_skb_1, 1);
kprobe_pos!(kprobe_skb_2, 2);
kprobe_pos!(kprobe_skb_3, 3);
kprobe_pos!(kprobe_skb_4, 4);
kprobe_pos!(kprobe_skb_5, 5);

ftrace_pos!(fentry_skb_0, fexit_skb_0, 0);
ftrace_pos!(fentry_skb_1, fexit_skb_1, 1);
ftrace_pos!(fentry_skb_2, fexit_skb_2, 2);
ftrace_pos!(fentry_skb_3, fexit_skb_3, 3);
ftrace_pos!(fentry_skb_4, fexit_skb_4, 4);
ftrace_pos!(fentry_skb_5, fexit_skb_5, 5);
ftrace_pos!(fentry_skb_6, fexit_skb_6, 6);
ftrace_pos!(fentry_skb_7, fexit_skb_7, 7);
ftrace_pos!(fentry_skb_8, fexit_skb_8, 8);
ftrace_pos!(fentry_skb_9, fexit_skb_9, 9);
ftrace_pos!(fentry_skb_10, fexit_skb_10, 10);
ftrace_pos!(fentry_skb_11, fexit_skb_11, 11);

include!(concat!(env!("OUT_DIR"), "/tp_slots.rs"));

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
