//! Whether a call is traced: the mark, `--netns`/`--dev` and `-f` checks
//! (the path every unmatched call takes, kept short), and `--track`'s
//! followed skbs.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use ipft_common::{CONFIG_DEV, CONFIG_FILTER, CONFIG_NETNS, CONFIG_RDONLY_CAST, CONFIG_TRACK};

use crate::{
    kmem::{load, rdonly_cast, read},
    track::{is_tracked, track_skb, tracking_any},
};

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
pub(crate) fn wanted(skb: u64) -> bool {
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
