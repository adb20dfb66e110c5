//! Sending records to userspace through the `EVENTS` perf rings, counting
//! in `LOST` those that do not fit.
use aya_ebpf::{
    bindings::BPF_F_CURRENT_CPU, helpers::bpf_perf_event_output, maps::PerCpuArray, EbpfContext,
};
use ipft_common::{Event, CONFIG_CAPTURE};

use crate::{
    capture::send_captured,
    maps::{EVENTS, LOST},
};

/// Sends an event to userspace, counting it in `LOST` when it does not fit.
#[inline(always)]
pub(crate) fn send<C: EbpfContext>(ctx: &C, event: &Event) {
    output(
        ctx.as_ptr(),
        (event as *const Event).cast(),
        core::mem::size_of::<Event>() as u64,
    );
}

/// Writes `size` bytes at `data` as one perf record, counting it in `LOST`
/// when it does not fit.
#[inline(always)]
pub(crate) fn output(ctx: *mut core::ffi::c_void, data: *const u8, size: u64) {
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
pub(crate) fn count(counter: &PerCpuArray<u64>) {
    if let Some(n) = counter.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
}

/// Sends a matched call's event, with the packet's bytes under `-w`.
#[inline(always)]
pub(crate) fn send_snapshot<C: EbpfContext>(ctx: &C, skb: u64, event: &Event) {
    if config!(flags) & CONFIG_CAPTURE == 0 {
        send(ctx, event);
    } else {
        send_captured(ctx.as_ptr(), skb, event);
    }
}
