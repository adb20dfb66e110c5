//! ipft's eBPF programs.
//!
//! Every program does the same thing: take the `struct sk_buff *` argument,
//! read `skb->mark` at the offset userspace found in BTF (a direct load
//! through `bpf_rdonly_cast` where the kernel has it), and return at once
//! unless `(mark & mask) == mark_filter`; with `-f`, call the filter
//! function `ipft_filter`, whose body userspace replaces at load. A
//! matching call is sent to userspace as one `Event` through the `EVENTS`
//! perf event array; with `-w` (`CONFIG_CAPTURE`, checked only after the
//! match) the same record also carries the packet's first bytes
//! (`CaptureRecord`).
//!
//! Programs come in families, one program per skb argument position, because
//! the position must be a compile-time constant for the verifier:
//! `kprobe_skb_N` (for kprobes and kprobe-multi links), `fentry_skb_N`,
//! `fexit_skb_N`, and `tp_p{N}_s{slot}`. The list of programs, their names
//! and positions, is ipft-common's `programs::CATALOG`: build.rs turns each
//! entry into an invocation of one of the macros of [`programs`].
//!
//! The modules, in the order a call goes through them: [`maps`] (and the
//! globals), [`predicates`] (is the call traced?), [`trace`] (the event of
//! a traced call: [`snapshot`], then [`output`], or [`capture`] with `-w`),
//! [`track`] (`--track`'s skbs) and [`programs`] (the families); [`kmem`]
//! reads kernel memory for all of them.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

/// Reads one field of `CONFIG`. Volatile, so the compiler keeps the load
/// from the read-only map (whose value the verifier then knows) instead of
/// folding in the zero it was compiled with; one field at a time, so the hot
/// path loads only what it uses.
macro_rules! config {
    ($($field:tt)+) => {{
        // Used inside `unsafe` blocks too, where its own is redundant.
        #[allow(unused_unsafe)]
        let value = unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!($crate::maps::CONFIG.$($field)+))
        };
        value
    }};
}

mod capture;
mod kmem;
mod maps;
mod output;
mod predicates;
mod programs;
mod snapshot;
mod trace;
mod track;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
