//! BTF tracepoint programs: one per (skb position, slot), and the
//! `kfree_skb` tracepoint's, which reads the drop reason.

/// One `tp_btf` program per (position, slot); its identity is the slot.
macro_rules! tp_slot {
    ($name:ident, $pos:expr, $slot:expr) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = "tp_btf")]
        pub fn $name(ctx: *mut core::ffi::c_void) -> i32 {
            let ctx = BtfTracePointContext::new(ctx);
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || tracepoint_id($pos, $slot),
                0,
                0,
                Site::Plain,
            );
            0
        }
    };
}

/// The `kfree_skb` tracepoint with its drop reason and where it was freed:
/// `TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`.
macro_rules! tp_kfree_skb {
    ($name:ident, $pos:expr, $reason:expr) => {
        #[btf_tracepoint]
        pub fn $name(ctx: BtfTracePointContext) -> i32 {
            let reason = ctx.arg::<u64>($reason) as u32;
            let location = ctx.arg::<u64>(1);
            trace(
                &ctx,
                ctx.arg::<u64>($pos),
                || TP_KFREE_SKB_ID,
                EVENT_DROP_REASON,
                reason,
                Site::Location(location),
            );
            0
        }
    };
}
