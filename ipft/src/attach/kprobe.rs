//! kprobe backend: one kprobe per function.
//!
//! Minimum kernel: 4.17 for perf-based kprobes, 5.15 for `bpf_get_func_ip`
//! in kprobes (the function identity). Needs `CONFIG_KPROBES`. Traces module
//! functions. The skb must be one of the six register-passed arguments
//! (positions 0..=5 on x86_64).
//!
//! One program per argument layout is maps once ([`super::programs`]); each
//! function then costs one perf kprobe at its address, created from every
//! CPU at once ([`super::kprobe::each_target`]). Most of that cost is the kernel's:
//! each kprobe updates ftrace's call sites under one lock.
//!
//! function_graph adds a kretprobe per function, opened before its kprobe
//! (a function whose return cannot be hooked is not entered either), with
//! the one program `kretprobe_graph`: it reports the calls whose entry was
//! traced (`ENTERED`, keyed by the call's stack frame: see
//! `ipft_common::Call`). A kretprobe keeps a few return slots per CPU
//! (perf's default `maxactive`); returns beyond them are missed.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b kprobe -r '^ip_'
//! sudo ipft -m 0x55555555 -b kprobe -t function_graph -r '^ip_'
//! ```
use std::{
    collections::HashMap,
    os::fd::{AsFd, OwnedFd},
};

use anyhow::{anyhow, Context, Result};
use ipft_common::{programs as catalog, KPROBE_POSITIONS};

use super::{
    functions::{each_target, fail_all, identities, Hooked},
    programs::{self, Maps, Programs},
    Backend, Link, Report,
};
use crate::{
    discover::{Target, TargetKind},
    sys::{
        bpf::{self, AttachType, ProgType},
        perf::{self, Probe},
    },
};

pub struct Kprobe {
    /// function_graph: hook the returns too.
    graph: bool,
}

impl Kprobe {
    pub fn new(graph: bool) -> Self {
        Kprobe { graph }
    }
}

/// kprobes read arguments from registers: the skb must be one of the six.
pub fn register_argument(target: &Target) -> Result<(), &'static str> {
    match usize::from(target.skb_pos) < KPROBE_POSITIONS {
        true => Ok(()),
        false => Err("the skb is not a register argument"),
    }
}

/// The kprobe program for a function: `kprobe_skb_N` (skb at position N),
/// or for the drop functions the one that also reads the drop reason.
pub fn program(target: &Target) -> Result<&'static str> {
    catalog::kprobe(target.skb_pos, target.reason_pos).ok_or_else(|| {
        anyhow!(
            "no kprobe program reads an skb at argument {}",
            target.skb_pos
        )
    })
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

    fn attach(&mut self, maps: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link> {
        match Probes::new(maps, &targets, self.graph) {
            Ok(probes) => each_target(targets, &|t| probes.attach(t), report),
            Err(err) => fail_all(targets, &err, report),
        }
    }

    /// The kprobe programs note a cloning call's entry (in `CLONING`) when
    /// its function is in `CLONERS`; a kretprobe reports the copy.
    fn follow_clones(&self, maps: &Maps, cloners: &[Target]) -> Result<(Vec<Link>, usize)> {
        note_cloners(maps, cloners)?;
        attach_returns(maps, catalog::KRETPROBE_CLONE, cloners)
    }
}

/// Puts the cloning functions' identities in `CLONERS`, where the entry
/// programs look for them.
pub fn note_cloners(maps: &Maps, cloners: &[Target]) -> Result<()> {
    for id in cloners.iter().flat_map(identities) {
        maps.update(ipft_common::maps::CLONERS.name, &id.to_ne_bytes(), &[1])
            .context("cannot fill the CLONERS map")?;
    }
    Ok(())
}

/// The maps programs, by name, and the kprobe PMU.
struct Probes {
    programs: HashMap<&'static str, Result<OwnedFd, String>>,
    pmu_type: u32,
    /// function_graph: the return program, for every function.
    returns: Option<OwnedFd>,
}

impl Probes {
    /// Loads each program `targets` need, once.
    fn new(maps: &Maps, targets: &[Target], graph: bool) -> Result<Self> {
        let pmu_type = perf::kprobe_pmu_type()
            .context("this kernel has no kprobe PMU (CONFIG_KPROBES is off): try -b tracepoint")?;
        let mut names: Vec<&str> = targets.iter().filter_map(|t| program(t).ok()).collect();
        names.sort_unstable();
        names.dedup();
        let relocated = Programs::relocate(maps, |name| {
            names.contains(&name) || (graph && name == catalog::KRETPROBE_GRAPH)
        })?;
        let returns = match graph {
            true => Some(load(&relocated, catalog::KRETPROBE_GRAPH).map_err(|why| anyhow!(why))?),
            false => None,
        };
        let programs = names
            .into_iter()
            .map(|name| (name, load(&relocated, name)))
            .collect();
        Ok(Probes {
            programs,
            pmu_type,
            returns,
        })
    }

    fn attach(&self, target: &Target) -> Result<Hooked> {
        let name = program(target)?;
        let prog = match self.programs.get(name) {
            Some(Ok(prog)) => prog,
            Some(Err(why)) => return Err(anyhow!("{why}")),
            None => return Err(anyhow!("{name} was not maps")),
        };
        let mut links: Vec<Link> = Vec::with_capacity(2);
        if let Some(returns) = &self.returns {
            let link =
                perf::kprobe_open(self.pmu_type, Probe::Return, target.addr, returns.as_fd())
                    .context("kretprobe attach failed")?;
            links.push(Box::new(link));
        }
        let link = perf::kprobe_open(self.pmu_type, Probe::Entry, target.addr, prog.as_fd())
            .context("kprobe attach failed")?;
        links.push(Box::new(link));
        Ok((links, identities(target)))
    }
}

/// Attaches kprobe program `prog` (e.g. `kretprobe_clone`) to the return
/// of every target. Returns the links and how many targets failed.
fn attach_returns(maps: &Maps, prog: &str, targets: &[Target]) -> Result<(Vec<Link>, usize)> {
    let pmu_type = perf::kprobe_pmu_type().context("this kernel has no kprobe PMU")?;
    let programs = Programs::relocate(maps, |name| name == prog)?;
    let fd = load(&programs, prog).map_err(|why| anyhow!("{why}"))?;
    let links: Vec<Link> = targets
        .iter()
        .filter_map(|t| perf::kprobe_open(pmu_type, Probe::Return, t.addr, fd.as_fd()).ok())
        .map(|link| Box::new(link) as Link)
        .collect();
    let failed = targets.len() - links.len();
    Ok((links, failed))
}

/// Loads kprobe program `name`; a refusal is kept as the reason every
/// function using it fails with.
fn load(programs: &Programs, name: &str) -> Result<OwnedFd, String> {
    let program = bpf::Program {
        prog_type: ProgType::Kprobe,
        expected_attach_type: AttachType::None,
        name,
        insns: programs.insns(name).map_err(|e| e.to_string())?,
        license: &programs.license,
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    programs::load(&program)
        .map_err(|(err, log)| format!("loading {name} failed ({err}); verifier log: {log}"))
}
