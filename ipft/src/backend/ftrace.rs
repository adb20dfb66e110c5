//! ftrace backend: fentry programs (and fexit for function_graph).
//!
//! Minimum kernel: 5.5 for fentry/fexit, 5.15 for `bpf_get_func_ip` (the
//! function identity). The kernel binds a tracing program to its target when
//! it loads, so every function costs one load (two with fexit). Functions
//! with more than 12 arguments cannot be traced; module functions need the
//! module's BTF object at load time, which aya 0.14 cannot pass, so they fail
//! with that reason.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b ftrace -t function_graph -r '^ip_'
//! ```
use anyhow::{Context, Result};
use aya::{
    programs::{FEntry, FExit},
    Btf, Ebpf,
};
use ipft_common::FTRACE_POSITIONS;

use super::{Backend, Link};
use crate::discover::{Target, TargetKind};

pub struct Ftrace {
    btf: Btf,
    /// function_graph: attach fexit too.
    graph: bool,
}

impl Ftrace {
    pub fn new(graph: bool) -> Result<Self> {
        let btf = Btf::from_sys_fs().context("cannot read the kernel's BTF")?;
        Ok(Ftrace { btf, graph })
    }
}

impl Backend for Ftrace {
    fn name(&self) -> &'static str {
        "ftrace"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Function
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        if usize::from(target.nargs) > FTRACE_POSITIONS {
            return Err("more than 12 arguments");
        }
        if target.module != "vmlinux" {
            return Err("fentry on module functions is not supported yet (aya 0.14)");
        }
        Ok(())
    }

    fn attach(&mut self, ebpf: &mut Ebpf, target: &Target, _slot: usize) -> Result<Vec<Link>> {
        let pos = target.skb_pos;
        let entry: &mut FEntry = ebpf
            .program_mut(&super::kprobe::program_name("fentry", target))
            .context("program missing from the eBPF object")?
            .try_into()?;
        let mut links: Vec<Link> = vec![Box::new(attach_fentry(entry, &target.name, &self.btf)?)];
        if self.graph {
            let exit: &mut FExit = ebpf
                .program_mut(&format!("fexit_skb_{pos}"))
                .context("program missing from the eBPF object")?
                .try_into()?;
            links.push(Box::new(attach_fexit(exit, &target.name, &self.btf)?));
        }
        Ok(links)
    }
}

// One aya program object serves every function: load it for this target,
// attach, take the link (which keeps the kernel program alive), then unload
// our handle so the next target can load it again.
fn attach_fentry(
    prog: &mut FEntry,
    name: &str,
    btf: &Btf,
) -> Result<aya::programs::fentry::FEntryLink> {
    prog.load(name, btf).context("fentry load failed")?;
    let link = prog.attach().and_then(|id| prog.take_link(id));
    prog.unload().ok();
    link.context("fentry attach failed")
}

pub fn attach_fexit(
    prog: &mut FExit,
    name: &str,
    btf: &Btf,
) -> Result<aya::programs::fexit::FExitLink> {
    prog.load(name, btf).context("fexit load failed")?;
    let link = prog.attach().and_then(|id| prog.take_link(id));
    prog.unload().ok();
    link.context("fexit attach failed")
}

/// Loads (without attaching) an fentry program on `target`, to learn whether
/// this kernel allows fentry at all. Returns why not.
pub fn probe(ebpf: &mut Ebpf, target: &Target) -> Result<(), String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("cannot read the kernel's BTF ({e})"))?;
    let prog: &mut FEntry = ebpf
        .program_mut(&format!("fentry_skb_{}", target.skb_pos))
        .ok_or("the eBPF object has no fentry program")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    let result = prog.load(&target.name, &btf);
    prog.unload().ok();
    match result {
        Ok(()) => Ok(()),
        Err(aya::programs::ProgramError::LoadError { io_error, .. }) => {
            Err(format!("fentry is refused ({})", io_name(&io_error)))
        }
        Err(e) => Err(format!("fentry is unavailable ({e})")),
    }
}

/// The kernel-internal "not supported" errno that bpf() can return.
const ENOTSUPP: i32 = 524;

fn io_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EINVAL) | Some(ENOTSUPP) | Some(libc::EOPNOTSUPP) => {
            format!("{err}: this kernel does not support fentry")
        }
        _ => err.to_string(),
    }
}
