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
use anyhow::{Context, Result};
use aya::{programs::KProbe, Ebpf};
use ipft_common::KPROBE_POSITIONS;

use super::{Backend, Link};
use crate::discover::{Target, TargetKind};

#[derive(Default)]
pub struct Kprobe {
    /// Which `kprobe_skb_N` programs are loaded: each is loaded once and
    /// attached to every function with its skb at position N.
    loaded: [bool; KPROBE_POSITIONS],
}

impl Backend for Kprobe {
    fn name(&self) -> &'static str {
        "kprobe"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Function
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        if usize::from(target.skb_pos) >= KPROBE_POSITIONS {
            return Err("the skb is not a register argument");
        }
        Ok(())
    }

    fn attach(&mut self, ebpf: &mut Ebpf, target: &Target, _slot: usize) -> Result<Vec<Link>> {
        let pos = usize::from(target.skb_pos);
        let name = format!("kprobe_skb_{pos}");
        let prog: &mut KProbe = ebpf
            .program_mut(&name)
            .context("program missing from the eBPF object")?
            .try_into()?;
        if !self.loaded[pos] {
            prog.load()
                .with_context(|| format!("loading {name} failed"))?;
            self.loaded[pos] = true;
        }
        let id = prog
            .attach(&target.name, 0)
            .context("kprobe attach failed")?;
        Ok(vec![Box::new(prog.take_link(id)?)])
    }
}
