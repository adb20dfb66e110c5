//! A matched call's event: the call, and the packet as the skb holds it then.
use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel_buf};
use ipft_common::{Event, Offsets};

use crate::kmem::read;

/// Fills the packet snapshot of `event` from the skb.
#[inline(always)]
pub(crate) fn snapshot(o: &Offsets, skb: u64, event: &mut Event) {
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
pub(crate) fn new_event(skb: u64, func: u64, flags: u32) -> Event {
    let mut event = Event::zeroed();
    event.skb = skb;
    event.tstamp = unsafe { bpf_ktime_get_ns() };
    event.func = func;
    event.cpu = unsafe { bpf_get_smp_processor_id() };
    event.flags = flags;
    event
}
