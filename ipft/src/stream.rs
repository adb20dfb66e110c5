//! Streaming events from the kernel: the `EVENTS` perf event array, read on
//! every CPU with tokio, decoded into [`Record`]s.

/// One decoded event, as stored for the aggregate table. Fixed size: the
/// function is an index into the run's target list, not a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The `struct sk_buff *` pointer: the packet id.
    pub skb: u64,
    /// Kernel monotonic time in nanoseconds (`bpf_ktime_get_ns`).
    pub tstamp: u64,
    /// Index into the `&[Target]` of this run.
    pub func: u32,
    pub cpu: u32,
    /// A function return (fexit, function_graph tracer), not an entry.
    pub is_return: bool,
}
