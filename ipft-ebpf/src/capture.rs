//! `-w`: the record of a matched call that also carries the frame's first
//! bytes, assembled in a per-CPU buffer of `CAPTURES`.
use aya_ebpf::helpers::generated::bpf_probe_read_kernel as read_kernel_raw;
use ipft_common::{
    maps::CAPTURE_LEVELS, Capture, CaptureRecord, Event, CAPTURE_SIZE, EVENT_CAPTURE, EVENT_SIZE,
    LINK_ETHERNET, LINK_NONE, LINK_RAW, SNAPLEN_MAX,
};

use crate::{
    kmem::read,
    maps::{CAPTURES, CAPTURE_DEPTH, LOST},
    output::{count, output},
};

/// `-w`: sends `event` with the packet's bytes. A function of its own (a
/// BPF subprogram): inlined, it changes how the compiler lays out the event
/// on the path without `-w` too.
#[inline(never)]
pub(crate) fn send_captured(ctx: *mut core::ffi::c_void, skb: u64, event: &Event) {
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
