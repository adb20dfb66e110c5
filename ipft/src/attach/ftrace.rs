//! ftrace backend: fentry programs (and fexit for function_graph).
//!
//! Minimum kernel: 5.5 for fentry/fexit, 5.15 for `bpf_get_func_ip` (the
//! function identity). The kernel binds a tracing program to its target when
//! it loads, so every function costs one load — a verifier pass and a JIT —
//! plus one for fexit with `-t function_graph` (the function tracer loads no
//! fexit). ipft loads them itself ([`super::programs`]), from every CPU at
//! once ([`super::kprobe::each_target`]), against the function's BTF id found once at
//! discovery; module functions are maps against the module's BTF object.
//! Functions with more than 12 arguments cannot be traced (6 before kernel
//! 6.5 or so: the kernel answers ENOTSUPP).
//!
//! ```text
//! sudo ipft -m 0x55555555 -b ftrace -t function_graph -r '^ip_'
//! ```
use std::{
    collections::{HashMap, HashSet},
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use anyhow::{anyhow, Context, Result};
use ipft_common::{
    programs::{self as catalog, Family, Role},
    FTRACE_POSITIONS,
};

use super::{
    functions::{each_target, fail_all, identities, Hooked},
    programs::{Maps, Programs},
    Backend, Link, Report,
};
use crate::{
    discover::{Source, Target, TargetKind, Vmlinux},
    sys::bpf::{self, AttachType, ProgType},
};

pub struct Ftrace {
    /// function_graph: attach fexit too.
    graph: bool,
}

impl Ftrace {
    pub fn new(graph: bool) -> Self {
        Ftrace { graph }
    }
}

impl Backend for Ftrace {
    fn name(&self) -> &'static str {
        "ftrace"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Function
    }

    fn addresses(&self) -> Source {
        Source::Ftrace
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        match usize::from(target.nargs) > FTRACE_POSITIONS {
            true => Err("more than 12 arguments"),
            false => Ok(()),
        }
    }

    fn attach(&mut self, maps: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link> {
        match Loader::new(maps, self.graph, &targets) {
            Ok(loader) => each_target(targets, &|t| loader.attach(t), report),
            Err(err) => fail_all(targets, &err, report),
        }
    }

    fn follow_clones(&self, maps: &Maps, cloners: &[Target]) -> Result<(Vec<Link>, usize)> {
        attach_fexit(maps, catalog::FEXIT_CLONE, cloners)
    }
}

/// What every load needs, prepared once.
struct Loader {
    programs: Programs,
    /// Module name → its BTF object, for module functions.
    modules: HashMap<String, OwnedFd>,
    graph: bool,
}

impl Loader {
    /// The loader for the skb programs (fentry, and fexit for `graph`).
    fn new(maps: &Maps, graph: bool, targets: &[Target]) -> Result<Self> {
        let programs = Programs::relocate(maps, |name| {
            catalog::find(name).is_some_and(|p| {
                (p.role == Role::Call && p.family == Family::Fentry)
                    || (graph && p.role == Role::Return)
            })
        })?;
        Self::with_programs(programs, graph, targets)
    }

    fn with_programs(programs: Programs, graph: bool, targets: &[Target]) -> Result<Self> {
        let wanted: HashSet<&str> = targets
            .iter()
            .map(|t| t.module.as_str())
            .filter(|m| *m != "vmlinux")
            .collect();
        let modules = match wanted.is_empty() {
            true => HashMap::new(),
            false => module_btf_objects(&wanted)
                .context("cannot list the kernel's module BTF objects")?,
        };
        Ok(Loader {
            programs,
            modules,
            graph,
        })
    }

    /// Loads and attaches fentry (and fexit) on `target`.
    fn attach(&self, target: &Target) -> Result<Hooked> {
        let pos = target.skb_pos;
        let no_program = || anyhow!("no fentry program reads an skb at argument {pos}");
        let entry = catalog::fentry(pos, target.reason_pos).ok_or_else(no_program)?;
        let mut links = vec![self.attach_one(entry, AttachType::TraceFentry, target)?];
        if self.graph {
            let exit = catalog::fexit(pos).ok_or_else(no_program)?;
            links.push(self.attach_one(exit, AttachType::TraceFexit, target)?);
        }
        Ok((links, identities(target)))
    }

    /// Loads program `name` against `target` and attaches it.
    fn attach_one(&self, name: &str, attach: AttachType, target: &Target) -> Result<Link> {
        let module = self.btf_object(target)?;
        let kind = match attach {
            AttachType::TraceFexit => "fexit",
            _ => "fentry",
        };
        let program = bpf::Program {
            prog_type: ProgType::Tracing,
            expected_attach_type: attach,
            name,
            insns: self.programs.insns(name)?,
            license: &self.programs.license,
            attach_btf_id: target.btf_id,
            attach_btf_obj: module,
        };
        let prog = bpf::prog_load(&program, &mut [])
            .map_err(|err| anyhow!("{}", io_name(&err)).context(format!("{kind} load failed")))?;
        // The link holds the program: its fd can close.
        let link = bpf::raw_tracepoint_open(prog.as_fd())
            .map_err(|err| anyhow!("{}", io_name(&err)).context(format!("{kind} attach failed")))?;
        Ok(Box::new(link))
    }
}

impl Loader {
    /// The BTF object `target`'s BTF id is in: none for vmlinux.
    fn btf_object(&self, target: &Target) -> Result<Option<BorrowedFd<'_>>> {
        match target.module.as_str() {
            "vmlinux" => Ok(None),
            name => Ok(Some(
                self.modules
                    .get(name)
                    .with_context(|| format!("the kernel has no BTF object for module {name}"))?
                    .as_fd(),
            )),
        }
    }
}

/// Attaches fexit program `prog` (e.g. `fexit_clone`) to every target.
/// Returns the links and how many targets failed.
fn attach_fexit(maps: &Maps, prog: &str, targets: &[Target]) -> Result<(Vec<Link>, usize)> {
    let programs = Programs::relocate(maps, |name| name == prog)?;
    let loader = Loader::with_programs(programs, false, targets)?;
    let mut links = Vec::new();
    for target in targets {
        if let Ok(link) = loader.attach_one(prog, AttachType::TraceFexit, target) {
            links.push(link);
        }
    }
    let failed = targets.len() - links.len();
    Ok((links, failed))
}

/// The BTF objects of the modules in `wanted`, by name.
fn module_btf_objects(wanted: &HashSet<&str>) -> io::Result<HashMap<String, OwnedFd>> {
    let mut found = HashMap::new();
    let mut id = 0;
    while let Some(next) = bpf::btf_get_next_id(id)? {
        id = next;
        // An object can go away between the two calls (a module unloaded).
        let Ok(fd) = bpf::btf_get_fd_by_id(id) else {
            continue;
        };
        let name = bpf::btf_name(fd.as_fd())?;
        if wanted.contains(name.as_str()) {
            found.insert(name, fd);
        }
    }
    Ok(found)
}

/// Loads (without attaching) an fentry program on `consume_skb`, to learn
/// whether this kernel allows fentry at all. Returns why not.
pub fn probe(maps: &Maps, vmlinux: &Vmlinux) -> Result<(), String> {
    const NAME: &str = match catalog::fentry(0, None) {
        Some(name) => name,
        None => panic!("the catalog has an fentry program for the first argument"),
    };
    let btf_id = function_id(vmlinux, "consume_skb")
        .ok_or("the kernel's BTF has no consume_skb to try fentry on")?;
    let programs = Programs::relocate(maps, |name| name == NAME).map_err(|e| format!("{e:#}"))?;
    let program = bpf::Program {
        prog_type: ProgType::Tracing,
        expected_attach_type: AttachType::TraceFentry,
        name: NAME,
        insns: programs.insns(NAME).map_err(|e| format!("{e}"))?,
        license: &programs.license,
        attach_btf_id: btf_id,
        attach_btf_obj: None,
    };
    match bpf::prog_load(&program, &mut []) {
        Ok(_) => Ok(()),
        Err(err) => Err(format!("fentry is refused ({})", io_name(&err))),
    }
}

/// The BTF id of function `name` in `btf`.
fn function_id(btf: &Vmlinux, name: &str) -> Option<u32> {
    btf.ids(name)
        .into_iter()
        .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(btf_rs::Type::Func(_))))
}

/// The kernel-internal "not supported" errno that bpf() can return.
const ENOTSUPP: i32 = 524;

fn io_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(ENOTSUPP) => {
            "the kernel cannot trace this function with fentry (ENOTSUPP: too many arguments, or no fentry support)".into()
        }
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            format!("{err}: this kernel does not support fentry")
        }
        _ => err.to_string(),
    }
}
