//! Attaching: one small interface, one file per backend.
//!
//! A backend decides which targets it can trace ([`Backend::check`]) and
//! attaches one target at a time ([`Backend::attach`]), returning a [`Link`]
//! that keeps the program attached until it is dropped. Everything else —
//! choosing a backend, counting, progress, cancellation — is shared in
//! [`crate::attach`].
pub mod ftrace;
mod kprobe;
mod tracepoint;

use std::{any::Any, path::Path};

use anyhow::{bail, Result};
use aya::Ebpf;

pub use ftrace::Ftrace;
pub use kprobe::Kprobe;
pub use tracepoint::Tracepoint;

use crate::{
    cli::{BackendChoice, Tracer},
    discover::{Target, TargetKind},
};

/// Keeps one program attached to one target; dropping it detaches.
pub type Link = Box<dyn Any + Send>;

/// How programs reach the kernel.
pub trait Backend: Send {
    /// The name users pass to `-b`.
    fn name(&self) -> &'static str;
    /// Which kind of target this backend traces.
    fn target_kind(&self) -> TargetKind;
    /// Why this backend cannot trace `target`, if it cannot.
    fn check(&self, target: &Target) -> Result<(), &'static str>;
    /// Attaches the programs `target` needs (one, or two for function_graph).
    fn attach(&mut self, ebpf: &mut Ebpf, target: &Target, slot: usize) -> Result<Vec<Link>>;
}

/// Whether this kernel can run kprobes: the perf kprobe PMU exists.
pub fn kprobes_available() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// Picks the backend: the user's, or for `auto` the best this kernel allows,
/// with a sentence saying why. `fentry_works` is asked only when needed
/// because it loads a program.
pub fn choose(
    choice: BackendChoice,
    tracer: Tracer,
    fentry_works: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(BackendChoice, String)> {
    let graph = tracer == Tracer::FunctionGraph;
    match choice {
        BackendChoice::Auto if graph => match fentry_works() {
            Ok(()) => Ok((BackendChoice::Ftrace, "function_graph needs fexit".into())),
            Err(why) => bail!("function_graph needs the ftrace backend (fentry/fexit), but {why}"),
        },
        BackendChoice::Auto if kprobes_available() => {
            Ok((BackendChoice::Kprobe, "the kernel has kprobes".into()))
        }
        BackendChoice::Auto => match fentry_works() {
            Ok(()) => Ok((BackendChoice::Ftrace, "no kprobes, but fentry works".into())),
            Err(why) => Ok((
                BackendChoice::Tracepoint,
                format!("no kprobes (CONFIG_KPROBES is off) and {why}"),
            )),
        },
        BackendChoice::Kprobe if graph => {
            bail!("function_graph needs function returns, which the kprobe backend does not record: use -b ftrace")
        }
        BackendChoice::Tracepoint if graph => {
            bail!("function_graph needs function returns, which tracepoints do not have: use -b ftrace")
        }
        BackendChoice::Kprobe if !kprobes_available() => bail!(
            "the kprobe backend is unavailable: this kernel has no kprobes (CONFIG_KPROBES is off); try -b tracepoint"
        ),
        BackendChoice::Ftrace => match fentry_works() {
            Ok(()) => Ok((choice, "chosen with -b".into())),
            Err(why) => bail!("the ftrace backend is unavailable: {why}; try -b kprobe or -b tracepoint"),
        },
        _ => Ok((choice, "chosen with -b".into())),
    }
}

/// Builds the backend for a choice made by [`choose`].
pub fn build(choice: BackendChoice, tracer: Tracer) -> Result<Box<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Kprobe => Box::new(Kprobe::default()),
        BackendChoice::Ftrace => Box::new(Ftrace::new(tracer == Tracer::FunctionGraph)?),
        BackendChoice::Tracepoint => Box::new(Tracepoint::new()?),
        BackendChoice::Auto => unreachable!("choose() resolves auto"),
    })
}

/// Turns aya's error chain into one short reason for `-v` and messages.
pub fn reason(err: &anyhow::Error) -> String {
    let io = err.chain().find_map(|e| e.downcast_ref::<std::io::Error>());
    match io {
        Some(io) => format!("{err}: {io}"),
        None => format!("{err:#}"),
    }
}
