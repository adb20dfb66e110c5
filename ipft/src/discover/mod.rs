//! Discover: which kernel functions (or tracepoints) take a
//! `struct sk_buff *`, where that argument sits, and where they live; and
//! the kernel's layout, which select builds the programs' configuration from.
//!
//! Takes the kernel's BTF ([`btf`], [`raw`]), function addresses
//! ([`addresses`]: `/proc/kallsyms` or ftrace's list, read in the
//! background: [`read_addresses`]) and the user's `-r`/`--module-regex`
//! ([`Filter`]); [`discover()`] gives the chosen backend's [`Target`]s, each
//! with its skb and drop-reason positions, address and BTF id, and the
//! [`drop_reasons`] names; [`KernelLayout`] the struct offsets, the
//! `bpf_rdonly_cast` ids and for `-f` every `sk_buff` field's offset; and
//! [`roles`] each target's [`roles::Role`] in a packet's life. All read once
//! at start-up.
mod addresses;
mod btf;
mod drop_reasons;
mod functions;
mod kallsyms;
mod layout;
mod offsets;
mod params;
mod raw;
pub mod roles;
mod tracepoints;

pub use addresses::{Listing, Source};

pub use btf::{KernelBtf, Vmlinux};
pub use drop_reasons::drop_reasons;
pub use functions::functions;
pub use kallsyms::Symbols;
use kallsyms::{kallsyms, read_kallsyms};
pub use layout::{KernelLayout, Needs};
#[cfg(test)]
use offsets::offsets;
pub use tracepoints::tracepoints;

use std::{collections::HashMap, path::Path};

use anyhow::{bail, Result};
use regex::Regex;

use crate::{cli::Options, par::Background, timing};

/// What a target is attached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A kernel function (kprobe, fentry/fexit).
    Function,
    /// A BTF-enabled tracepoint (`tp_btf`); `name` is the tracepoint's name.
    Tracepoint,
}

impl TargetKind {
    /// What one is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            TargetKind::Function => "function",
            TargetKind::Tracepoint => "tracepoint",
        }
    }
}

/// One traceable place, as shown in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Function or tracepoint name, e.g. `ip_rcv` or `netif_receive_skb`.
    pub name: String,
    /// `vmlinux` for the core kernel, else the module name (e.g. `veth`).
    pub module: String,
    /// The function's address (see `address`); 0 for tracepoints.
    pub addr: u64,
    /// What `addr` is.
    pub address: Address,
    /// 0-based position of the first `struct sk_buff *` parameter.
    pub skb_pos: u8,
    /// Number of parameters.
    pub nargs: u8,
    /// 0-based position of an `enum skb_drop_reason` parameter, if any.
    pub reason_pos: Option<u8>,
    pub kind: TargetKind,
    /// The function's BTF id in its object (vmlinux, or the module's split
    /// BTF), which fentry programs are maps against; for a tracepoint,
    /// its `btf_trace_<name>` type, which tp_btf programs are maps against.
    pub btf_id: u32,
    /// What the function returns (function_graph shows it on return rows).
    pub returns: Returns,
}

/// What a function's `addr` is. Events name a function by
/// `bpf_get_func_ip`, which on x86 kernels with IBT may be 4 bytes after
/// its start (kprobes) or 4 bytes before ftrace's hook (fprobe, fentry,
/// when the function begins with ENDBR): see `attach::functions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Address {
    /// Its symbol's address (`/proc/kallsyms`): where it starts.
    #[default]
    Symbol,
    /// Where ftrace hooks it (`available_filter_functions_addrs`): its
    /// start, or 4 bytes in after an ENDBR instruction.
    FtraceSite,
}

/// A function's return type, from its BTF prototype (how much of the
/// return register is its value, and how to read it): ipft-output's own
/// type, which reads function_graph's return values by it.
pub use ipft_output::retval::Returns;

/// Why a function with an skb parameter cannot be traced at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    Variadic,
    /// A struct or union passed by value: argument positions become unknowable.
    AggregateByValue,
}

/// A function or tracepoint with a `struct sk_buff *` parameter, straight
/// from BTF, before any backend-specific limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub target: Target,
    pub exclusion: Option<Exclusion>,
}

/// The user's `-r` and `--module-regex`.
#[derive(Default)]
pub struct Filter<'a> {
    pub name: Option<&'a Regex>,
    pub module: Option<&'a Regex>,
}

impl Filter<'_> {
    pub fn allows(&self, target: &Target) -> bool {
        self.name.is_none_or(|re| re.is_match(&target.name))
            && self.module.is_none_or(|re| re.is_match(&target.module))
    }
}

/// What [`targets`] found.
pub struct Found {
    /// Every target the backend can trace, with addresses for functions.
    pub targets: Vec<Target>,
    /// Targets with an skb parameter that cannot be traced at all or by
    /// this backend.
    pub unusable: usize,
}

/// Every target of `kind` that `usable` accepts: tracepoints from vmlinux
/// BTF, or functions from vmlinux and module BTF with their addresses from
/// `listing` (read meanwhile elsewhere: see [`addresses`]).
pub fn targets(
    kernel: KernelBtf,
    kind: TargetKind,
    usable: &dyn Fn(&Target) -> Result<(), &'static str>,
    listing: impl FnOnce() -> Result<Listing>,
    btf_dir: &Path,
    verbose: bool,
) -> Result<Found> {
    let found = match kind {
        TargetKind::Tracepoint => tracepoints(&kernel.vmlinux),
        TargetKind::Function => {
            let mut kernel = kernel;
            kernel.load_modules(btf_dir);
            // BTF first: the addresses are still being read meanwhile.
            let functions = functions(&kernel);
            timing::step(verbose, "BTF functions scanned");
            let listing = listing()?;
            let (found, missing) = addresses::resolve(functions, &listing);
            if verbose {
                let means = listing.missing_means();
                eprintln!("{missing} functions with an skb parameter {means}: skipped");
            }
            found
        }
    };
    let total = found.len();
    let targets: Vec<Target> = found
        .into_iter()
        .filter(|c| c.exclusion.is_none() && usable(&c.target).is_ok())
        .map(|c| c.target)
        .collect();
    Ok(Found {
        unusable: total - targets.len(),
        targets,
    })
}

/// Reads function addresses from `source` in the background: the kernel
/// is slow to produce them, and BTF is scanned meanwhile.
pub fn read_addresses(source: Source, verbose: bool) -> Background<Listing> {
    Background::start(move || {
        let read = Listing::read(source);
        timing::step(verbose, "function addresses read");
        read
    })
}

/// What the chosen backend traces, for [`discover`].
pub struct Wanted<'a> {
    pub kind: TargetKind,
    /// Where its addresses come from.
    pub addresses: Source,
    /// Whether it can trace a target, or why not.
    pub usable: &'a dyn Fn(&Target) -> Result<(), &'static str>,
    /// Its name, for the count of those it cannot trace.
    pub backend: &'static str,
}

/// What discovery gives the stages after it.
pub struct Discovered {
    /// The targets to trace (or list), `-r`/`--module-regex` applied.
    pub targets: Vec<Target>,
    /// How many targets `-r`/`--module-regex` left out.
    pub filtered: usize,
    /// `enum skb_drop_reason` value → name.
    pub reasons: HashMap<u32, String>,
}

/// The targets `wanted` can trace that `-r`/`--module-regex` allow, with
/// their addresses (from `addresses`, read meanwhile, unless the backend
/// reads another source), and the drop reasons' names. Without `-l`, no
/// target left is an error.
pub fn discover(
    kernel: KernelBtf,
    wanted: Wanted,
    addresses: Option<Background<Listing>>,
    opts: &Options,
) -> Result<Discovered> {
    let reasons = drop_reasons(&kernel.vmlinux);
    let source = wanted.addresses;
    let listing = move || match addresses.map(Background::take).transpose()? {
        // `-b auto` chose kprobes, which reach functions ftrace does not list.
        Some(read) if read.source == source || source == Source::Ftrace => Ok(read),
        _ => Listing::read(source),
    };
    let found = targets(
        kernel,
        wanted.kind,
        wanted.usable,
        listing,
        &opts.btf_dir,
        opts.verbose,
    )?;
    if opts.verbose && found.unusable > 0 {
        eprintln!(
            "{} with an skb parameter cannot be traced by the {} backend: skipped",
            found.unusable, wanted.backend
        );
    }
    let filter = Filter {
        name: opts.regex.as_ref(),
        module: opts.module_regex.as_ref(),
    };
    let (targets, filtered): (Vec<Target>, Vec<Target>) =
        found.targets.into_iter().partition(|t| filter.allows(t));
    timing::step(opts.verbose, &format!("{} targets found", targets.len()));
    if targets.is_empty() && !opts.list {
        bail!(
            "no {} matches the given -r/--module-regex (see ipft -l)",
            wanted.kind.noun()
        );
    }
    Ok(Discovered {
        targets,
        filtered: filtered.len(),
        reasons,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A function candidate at skb position 0, for tests.
    pub fn candidate(name: &str, module: &str) -> Candidate {
        Candidate {
            target: Target {
                name: name.into(),
                module: module.into(),
                addr: 0,
                address: Default::default(),
                skb_pos: 0,
                nargs: 1,
                reason_pos: None,
                kind: TargetKind::Function,
                btf_id: 0,
                returns: Returns::Nothing,
            },
            exclusion: None,
        }
    }

    #[test]
    fn filter_matches_unanchored() {
        let name = Regex::new("rcv").unwrap();
        let module = Regex::new("^vmlinux$").unwrap();
        let filter = Filter {
            name: Some(&name),
            module: Some(&module),
        };
        assert!(filter.allows(&candidate("ip_rcv_finish", "vmlinux").target));
        assert!(!filter.allows(&candidate("ip_rcv", "veth").target));
        assert!(!filter.allows(&candidate("ip_output", "vmlinux").target));
    }

    // The tests below read the running kernel's BTF: discovery must work on
    // the real thing, not only on fixtures.
}
