//! fentry programs, by the skb's (and drop reason's) argument position.

/// fentry with the skb at argument `$pos`.
macro_rules! fentry_skb {
    ($name:ident, $pos:expr) => {
        #[fentry]
        pub fn $name(ctx: FEntryContext) -> i32 {
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || func_ip(&ctx),
                0,
                0,
                Site::Plain,
            );
            0
        }
    };
}

/// fentry for functions that also take an `enum skb_drop_reason`.
macro_rules! fentry_skb_reason {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[fentry]
        pub fn $name(ctx: FEntryContext) -> i32 {
            let reason = ctx.arg::<u64>($reason) as u32;
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || func_ip(&ctx),
                EVENT_DROP_REASON,
                reason,
                Site::FentryDrop,
            );
            0
        }
    };
}
