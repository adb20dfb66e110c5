//! The attach step: runs a [`Backend`] over every target, counts what
//! happened, reports progress, and stops early when asked to.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::backend::object::Loaded;
use ipft_common::tracepoint_id;

use crate::{
    backend::{self, Backend, Link},
    discover::{Target, TargetKind},
    progress::Progress,
    testhook,
};

/// The numbers of ipftrace2's `Attaching program (...)` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub filtered: usize,
}

/// What is attached: the links (dropping them detaches), the targets that
/// succeeded, and how to map an event's function identity to a target.
pub struct Attached {
    pub links: Vec<Link>,
    pub targets: Vec<Target>,
    /// Event `func` (address or tracepoint id) → index into `targets`.
    pub index: HashMap<u64, u32>,
    pub counts: Counts,
    /// The first failure's reason, for the error when nothing attached.
    pub first_error: Option<String>,
    pub cancelled: bool,
}

/// Attaches every target in `targets` (already filtered), counting
/// `filtered` ones as such. Checks `cancel` after each target.
pub fn attach_all(
    backend: &mut dyn Backend,
    ebpf: &mut Loaded,
    targets: Vec<Target>,
    filtered: usize,
    cancel: &AtomicBool,
    progress: &mut Progress,
    verbose: bool,
) -> Attached {
    let mut out = Attached {
        links: Vec::with_capacity(targets.len()),
        targets: Vec::with_capacity(targets.len()),
        index: HashMap::with_capacity(targets.len() * 2),
        counts: Counts {
            total: targets.len() + filtered,
            filtered,
            ..Counts::default()
        },
        first_error: None,
        cancelled: false,
    };
    progress.attaching(&out.counts);
    let pause = testhook::attach_pause();
    backend.attach_batch(ebpf, targets, &mut |target, slot, result| {
        match result {
            Ok(links) => {
                let idx = out.targets.len() as u32;
                for id in identities(&target, slot) {
                    out.index.entry(id).or_insert(idx);
                }
                out.links.extend(links);
                out.targets.push(target);
                out.counts.succeeded += 1;
            }
            Err(err) => {
                let why = backend::reason(&err);
                if verbose {
                    progress.note(&format!(
                        "cannot attach {} ({}): {why}",
                        target.name, target.module
                    ));
                }
                out.first_error.get_or_insert(why);
                out.counts.failed += 1;
            }
        }
        progress.attaching(&out.counts);
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
        out.cancelled = cancel.load(Ordering::Relaxed);
        !out.cancelled
    });
    progress.attached(&out.counts);
    out
}

/// The function identities the programs report for a target.
/// `bpf_get_func_ip` returns the function address, or on kernels with
/// IBT (x86 ENDBR) for kprobes, the address after the 4-byte ENDBR.
fn identities(target: &Target, slot: usize) -> Vec<u64> {
    match target.kind {
        TargetKind::Function => vec![target.addr, target.addr + 4],
        TargetKind::Tracepoint if backend::tracepoint::reads_drop_reason(target) => {
            vec![ipft_common::TP_KFREE_SKB_ID]
        }
        TargetKind::Tracepoint => vec![tracepoint_id(usize::from(target.skb_pos), slot)],
    }
}
