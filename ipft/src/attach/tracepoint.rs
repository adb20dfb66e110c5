//! tracepoint backend: BTF tracepoints (`tp_btf`) that carry an skb.
//!
//! Minimum kernel: 5.5. Works where kprobes and fentry do not (e.g. locked
//! down kernels): about 30 places in the stack (net_dev_queue,
//! netif_receive_skb, kfree_skb, consume_skb, …), named by the tracepoint.
//! A tracepoint program cannot ask which tracepoint it runs on, so each
//! attached tracepoint gets its own program copy `tp_p{pos}_s{slot}`, whose
//! slot id identifies it. ipft loads them itself ([`super::programs`]),
//! against the `btf_trace_<name>` type found at discovery.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b tracepoint
//! ```
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Result};
use ipft_common::{
    programs::{self as catalog, Family},
    tracepoint_id, TP_KFREE_SKB_ID, TP_POSITIONS, TP_SLOTS,
};

use super::{
    programs::{self, Maps, Programs},
    Backend, Link, Report,
};
use crate::{
    discover::{Target, TargetKind},
    sys::bpf::{self, AttachType, ProgType},
};

/// The `kfree_skb` tracepoint gets a program of its own that also reads
/// the drop reason (kernels 5.17+, where the reason is its third argument).
fn reads_drop_reason(target: &Target) -> bool {
    target.name == "kfree_skb" && target.skb_pos == 0 && target.reason_pos == Some(2)
}

#[derive(Default)]
pub struct Tracepoint;

impl Backend for Tracepoint {
    fn name(&self) -> &'static str {
        "tracepoint"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Tracepoint
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        if usize::from(target.skb_pos) >= TP_POSITIONS {
            return Err("the skb argument comes too late");
        }
        Ok(())
    }

    /// One after the other: there are only about 30, each a quick load.
    fn attach(&mut self, maps: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link> {
        let tp_btf = |n: &str| catalog::find(n).is_some_and(|p| p.family == Family::TpBtf);
        let programs = match Programs::relocate(maps, tp_btf) {
            Ok(programs) => programs,
            Err(err) => return super::functions::fail_all(targets, &err, report),
        };
        let mut links = Vec::new();
        // The next free program slot of each skb position.
        let mut slots = [0usize; TP_POSITIONS];
        for target in targets {
            let pos = usize::from(target.skb_pos);
            let outcome = attach_one(&programs, &target, slots[pos]).map(|(link, id)| {
                links.push(link);
                if id != TP_KFREE_SKB_ID {
                    slots[pos] += 1;
                }
                vec![id]
            });
            if !report(target, outcome) {
                break;
            }
        }
        links
    }

    fn follow_clones(&self, _: &Maps, _: &[Target]) -> Result<(Vec<Link>, usize)> {
        // No return hook: clones are followed only while they keep the
        // mark, which a clone copies.
        Ok((Vec::new(), 0))
    }
}

/// Loads the program of `target` (its slot's copy, or the drop-reason
/// program for kfree_skb) and attaches it. Returns the link and the
/// identity its events carry.
fn attach_one(programs: &Programs, target: &Target, slot: usize) -> Result<(Link, u64)> {
    let pos = usize::from(target.skb_pos);
    let (name, id) = match reads_drop_reason(target) {
        true => (catalog::TP_KFREE_SKB, TP_KFREE_SKB_ID),
        false => match catalog::tracepoint_slot(pos, slot) {
            Some(name) => (name, tracepoint_id(pos, slot)),
            None => bail!("all {TP_SLOTS} program slots for this position are in use"),
        },
    };
    let program = bpf::Program {
        prog_type: ProgType::Tracing,
        expected_attach_type: AttachType::TraceRawTp,
        name,
        insns: programs.insns(name)?,
        license: &programs.license,
        attach_btf_id: target.btf_id,
        attach_btf_obj: None,
    };
    let prog = programs::load(&program)
        .map_err(|(err, log)| anyhow!("tp_btf load failed ({err}); verifier log: {log}"))?;
    // The link holds the program: its fd can close.
    let link = bpf::raw_tracepoint_open(prog.as_fd())
        .map_err(|err| anyhow!("tp_btf attach failed: {err}"))?;
    Ok((Box::new(link), id))
}
