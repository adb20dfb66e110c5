//! kprobes (and kprobe-multi links) on functions whose skb, and drop
//! reason, are at fixed argument positions.

/// kprobe with the skb at argument `$pos`.
macro_rules! kprobe_skb {
    ($name:ident, $pos:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            if let Some(skb) = ctx.arg::<u64>($pos) {
                trace(&ctx, skb, || func_ip(&ctx), 0, 0, Site::Kprobe);
            }
            0
        }
    };
}

/// kprobe for functions that also take an `enum skb_drop_reason`.
macro_rules! kprobe_skb_reason {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            if let (Some(skb), Some(reason)) = (ctx.arg::<u64>($pos), ctx.arg::<u64>($reason)) {
                trace(
                    &ctx,
                    skb,
                    || func_ip(&ctx),
                    EVENT_DROP_REASON,
                    reason as u32,
                    Site::KprobeDrop,
                );
            }
            0
        }
    };
}
