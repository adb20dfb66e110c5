//! `--track`: the skbs followed after they matched once, in `TRACKED`,
//! and their count, `TRACKED_COUNT`.
use crate::maps::{TRACKED, TRACKED_COUNT, TRACK_FULL};

/// Whether `TRACKED` holds `skb`. The key is a copy made here: a look-up
/// takes its key's address, and the compiler stores an address-taken
/// variable to the stack where it is defined, which for `skb` was every
/// program's entry, on the path of every call.
#[inline(always)]
pub(crate) fn is_tracked(skb: u64) -> bool {
    let key = core::hint::black_box(skb);
    unsafe { TRACKED.get(&key) }.is_some()
}

/// Whether `TRACKED` may hold any skb ([`TRACKED_COUNT`]).
#[inline(always)]
pub(crate) fn tracking_any() -> bool {
    // Volatile: other CPUs change it, behind the compiler's back.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(TRACKED_COUNT)) != 0 }
}

/// Adds `delta` to [`TRACKED_COUNT`], atomically: every CPU updates it.
#[inline(always)]
pub(crate) fn count_tracked(delta: i64) {
    let n = core::ptr::addr_of_mut!(TRACKED_COUNT);
    // BPF_ATOMIC add (the `lock xadd` of eBPF's first instruction set): the
    // bpfel target offers no atomic types, and its result is unused.
    unsafe { core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) n, in(reg) delta) };
}

/// Follows `skb` from now on: counted first, so that the count is never
/// below what the map holds; uncounted when the map is full.
#[inline(always)]
pub(crate) fn track_skb(skb: u64) {
    count_tracked(1);
    if TRACKED.insert(&core::hint::black_box(skb), &1, 0).is_err() {
        count_tracked(-1);
        if let Some(full) = TRACK_FULL.get_ptr_mut(0) {
            unsafe { *full += 1 };
        }
    }
}
