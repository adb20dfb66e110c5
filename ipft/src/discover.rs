//! Target discovery: which kernel functions (or tracepoints) take a
//! `struct sk_buff *`, where that argument sits, and whether the running
//! kernel can attach to them.
//!
//! Sources, all read once at start-up: vmlinux BTF, each module's split BTF
//! (`/sys/kernel/btf/<module>`), and `/proc/kallsyms` for addresses.

/// What a target is attached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A kernel function (kprobe, fentry/fexit).
    Function,
    /// A BTF-enabled tracepoint (`tp_btf`); `name` is the tracepoint's name.
    Tracepoint,
}

/// One traceable place, as shown in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Function or tracepoint name, e.g. `ip_rcv` or `netif_receive_skb`.
    pub name: String,
    /// `vmlinux` for the core kernel, else the module name (e.g. `veth`).
    pub module: String,
    /// Address from `/proc/kallsyms`; 0 for tracepoints.
    pub addr: u64,
    /// 0-based position of the first `struct sk_buff *` parameter.
    pub skb_pos: u8,
    /// Number of parameters.
    pub nargs: u8,
    pub kind: TargetKind,
}
