//! `--track`: the returns of the functions that clone or copy an skb,
//! which report the new skb as a packet of the same family.
use aya_ebpf::EbpfContext;
use ipft_common::{EVENT_CLONE, EVENT_RETURN};

use crate::{
    output::send_snapshot,
    snapshot::{new_event, snapshot},
    track::track_skb,
};

/// `--track`: a cloning function returned `child`, a copy of `parent`:
/// track the child and report it as a new packet of that family.
#[inline(always)]
pub(crate) fn cloned<C: EbpfContext>(ctx: &C, parent: u64, child: u64, func: u64) {
    if child == 0 {
        return;
    }
    track_skb(child);
    let mut event = new_event(child, func, EVENT_CLONE | EVENT_RETURN);
    event.parent = parent;
    let offsets = config!(offsets);
    snapshot(&offsets, child, &mut event);
    send_snapshot(ctx, child, &event);
}

/// `--track` with kprobes: the return of skb_clone, skb_copy, … whose entry
/// saw a traced skb.
macro_rules! kretprobe_clone {
    ($name:ident) => {
        #[kretprobe]
        pub fn $name(ctx: RetProbeContext) -> u32 {
            let key = bpf_get_current_pid_tgid();
            if let Some(cloning) = unsafe { CLONING.get(&key) } {
                let cloning = *cloning;
                let _ = CLONING.remove(&key);
                cloned(&ctx, cloning.parent, ctx.ret::<u64>(), cloning.func);
            }
            0
        }
    };
}

/// `--track` with ftrace: the return of skb_clone, skb_copy, … (the skb is
/// argument `$pos`).
macro_rules! fexit_clone {
    ($name:ident, $pos:expr) => {
        #[fexit]
        pub fn $name(ctx: FExitContext) -> i32 {
            let parent = ctx.arg::<u64>($pos);
            if wanted(parent) {
                if let Ok(child) = ctx.ret::<u64>() {
                    cloned(&ctx, parent, child, func_ip(&ctx));
                }
            }
            0
        }
    };
}
