//! The programs: one macro per shape of program, in the module of its
//! family; build.rs invokes them once per entry of
//! `ipft_common::programs::CATALOG` (the file included at the end), with
//! the entry's name and argument positions. The macros' bodies name what
//! they use from here.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use ipft_common::{tracepoint_id, EVENT_DROP_REASON, TP_KFREE_SKB_ID};

use crate::{
    maps::CLONING,
    predicates::wanted,
    trace::{func_ip, trace, Site},
};
use clone::cloned;
use graph::returned;
use kprobe_multi::{args_of, register_argument};

#[macro_use]
mod kprobe;
#[macro_use]
mod kprobe_multi;
#[macro_use]
mod clone;
#[macro_use]
mod fentry;
#[macro_use]
pub(crate) mod graph;
#[macro_use]
mod tracepoint;

include!(concat!(env!("OUT_DIR"), "/programs.rs"));
