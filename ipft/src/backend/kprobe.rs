//! kprobe backend: one kprobe per function.
//!
//! Minimum kernel: 4.17 for perf-based kprobe attach, 5.15 for
//! `bpf_get_func_ip` in kprobes (the function identity). Needs
//! `CONFIG_KPROBES`. Traces module functions. The skb must be one of the six
//! register-passed arguments (positions 0..=5 on x86_64).
//!
//! ```text
//! sudo ipft -m 0x55555555 -b kprobe -r '^ip_'
//! ```
use std::collections::HashSet;

use anyhow::{Context, Result};
use aya::{programs::KProbe, Ebpf};
use ipft_common::KPROBE_POSITIONS;

use super::{Backend, Link};
use crate::discover::{Target, TargetKind};

#[derive(Default)]
pub struct Kprobe {
    /// Programs already loaded: each is loaded once and attached to every
    /// function with the same argument layout.
    loaded: HashSet<String>,
}

/// kprobes read arguments from registers: the skb must be one of the six.
pub fn register_argument(target: &Target) -> Result<(), &'static str> {
    match usize::from(target.skb_pos) < KPROBE_POSITIONS {
        true => Ok(()),
        false => Err("the skb is not a register argument"),
    }
}

/// The program for a function: `kprobe_skb_N` (skb at position N), or
/// `kprobe_skb_N_reason_M` for the drop functions that also pass an
/// `enum skb_drop_reason` at M (kfree_skb_reason, sk_skb_reason_drop).
pub fn program_name(family: &str, target: &Target) -> String {
    let pos = target.skb_pos;
    match target.reason_pos {
        Some(reason) if (pos, reason) == (0, 1) || (pos, reason) == (1, 2) => {
            format!("{family}_skb_{pos}_reason_{reason}")
        }
        _ => format!("{family}_skb_{pos}"),
    }
}

impl Backend for Kprobe {
    fn name(&self) -> &'static str {
        "kprobe"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Function
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        register_argument(target)
    }

    fn attach(&mut self, ebpf: &mut Ebpf, target: &Target, _slot: usize) -> Result<Vec<Link>> {
        let name = program_name("kprobe", target);
        let prog: &mut KProbe = ebpf
            .program_mut(&name)
            .context("program missing from the eBPF object")?
            .try_into()?;
        if !self.loaded.contains(&name) {
            prog.load()
                .with_context(|| format!("loading {name} failed"))?;
            self.loaded.insert(name);
        }
        let id = prog
            .attach(&target.name, 0)
            .context("kprobe attach failed")?;
        Ok(vec![Box::new(prog.take_link(id)?)])
    }
}
