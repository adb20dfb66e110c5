//! ipft: which kernel functions did each marked packet go through?
//!
//! Data flows one way, one module per step:
//! [`cli`] options → [`discover`] targets → [`attach`] (a [`backend`]) →
//! [`stream`] events → [`group`] per packet → [`render`] table or JSON.
//! [`session`] runs one trace through those steps (stop conditions,
//! readiness, [`detach`]); [`collect`] hands each event to group and render.
mod attach;
mod backend;
mod cli;
mod collect;
mod command;
mod detach;
mod discover;
mod group;
mod output;
mod progress;
#[cfg(test)]
mod random;
mod ready;
mod render;
mod session;
mod stream;
mod summary;
mod sys;
mod testhook;
mod track;

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use ipft_common::Config;

use crate::{
    backend::{object::Loaded, Backend},
    cli::{BackendChoice, Generate, Options, Output},
    discover::{Candidate, Filter, KernelBtf, Target, TargetKind},
};

/// The eBPF programs, built by `cargo xtask build` and embedded here.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("IPFT_EBPF_OBJECT"));

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Some(kind) = opts.generate {
        return generate(kind);
    }
    if let Some(code) = validate(&opts) {
        return code;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(&opts)));
    match result {
        Ok(code) => code,
        Err(err) => {
            let prefix = progress::paint("ipft:", progress::RED);
            if opts.verbose {
                eprintln!("{prefix} {err:#}");
            } else {
                eprintln!("{prefix} {err}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(opts: &Options) -> Result<ExitCode> {
    // First of all: a Ctrl-C during start-up must stop ipft, not be lost.
    progress::start_clock();
    let signals = session::Signals::new()?;
    check_privileges()?;
    let verbose = opts.verbose;
    // Start-up work that does not depend on what follows runs on other
    // cores meanwhile: reading /proc/kallsyms (slow for the kernel to
    // produce), and creating the maps once the filter is known.
    let kallsyms = match opts.backend {
        BackendChoice::Tracepoint => None,
        _ => Some(Background::start(move || {
            let read = discover::read_kallsyms();
            progress::step(verbose, "/proc/kallsyms read");
            read
        })),
    };
    let kernel = KernelBtf::load(&opts.btf_dir, false)?;
    progress::step(verbose, "vmlinux BTF opened");
    let config = Config {
        mark: opts.masked_mark(),
        mask: opts.mask,
        flags: config_flags(opts),
        offsets: discover::offsets(&kernel.vmlinux)?,
    };
    let (listing, pages, wakeup) = (opts.list, opts.perf_page_count, opts.perf_wakeup_events);
    let mut programs = Background::start(move || {
        let loaded = Loaded::load(&config)?;
        progress::step(verbose, "eBPF maps created");
        let rings = match listing {
            true => Vec::new(),
            false => stream::open_rings(&loaded, pages, wakeup)?,
        };
        Ok((loaded, rings))
    });

    let mut fentry_probe = || {
        let (ebpf, _) = programs.get().map_err(|e| format!("{e}"))?;
        backend::ftrace::probe(ebpf, &kernel.vmlinux)
    };
    let (choice, why) = backend::choose(
        opts.backend,
        opts.tracer,
        &mut fentry_probe,
        &mut backend::kprobe_multi::probe,
    )?;
    let backend = backend::build(choice, opts.tracer)?;
    progress::step(verbose, "backend chosen");
    if opts.backend == BackendChoice::Auto {
        eprintln!("Using the {} backend: {why}", backend.name());
    }

    let reasons = discover::drop_reasons(&kernel.vmlinux);
    let candidates = candidates(backend.as_ref(), kernel, kallsyms, opts)?;
    let filter = Filter {
        name: opts.regex.as_ref(),
        module: opts.module_regex.as_ref(),
    };
    let (targets, filtered): (Vec<Target>, Vec<Target>) =
        candidates.into_iter().partition(|t| filter.allows(t));
    progress::step(verbose, &format!("{} targets found", targets.len()));
    if opts.list {
        return list(&targets, opts.output == Output::Json).map(|()| ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!(
            "no {} matches the given -r/--module-regex (see ipft -l)",
            what(backend.as_ref())
        );
    }
    let ebpf = programs.take()?;
    session::trace(
        opts,
        (choice, backend),
        ebpf,
        targets,
        filtered.len(),
        reasons,
        signals,
    )
    .await
}

/// `Config::flags` for the programs.
fn config_flags(opts: &Options) -> u32 {
    let track = if opts.track {
        ipft_common::CONFIG_TRACK
    } else {
        0
    };
    let graph = match opts.tracer {
        cli::Tracer::FunctionGraph => ipft_common::CONFIG_GRAPH,
        cli::Tracer::Function => 0,
    };
    track | graph
}

/// Work started on another thread, its result taken when needed.
struct Background<T> {
    running: Option<std::thread::JoinHandle<Result<T>>>,
    done: Option<T>,
}

impl<T: Send + 'static> Background<T> {
    fn start(work: impl FnOnce() -> Result<T> + Send + 'static) -> Self {
        Background {
            running: Some(std::thread::spawn(work)),
            done: None,
        }
    }

    /// Waits for the result (once) and lends it.
    fn get(&mut self) -> Result<&mut T> {
        if let Some(running) = self.running.take() {
            let result = running
                .join()
                .map_err(|_| anyhow::anyhow!("a start-up thread panicked"))?;
            self.done = Some(result?);
        }
        self.done.as_mut().context("start-up work failed earlier")
    }

    fn take(mut self) -> Result<T> {
        self.get()?;
        self.done.take().context("start-up work failed earlier")
    }
}

/// Checks that need more than one option or the file system; usage errors
/// exit 2 like clap's own.
fn validate(opts: &Options) -> Option<ExitCode> {
    let usage = |msg: String| {
        Options::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    };
    if !opts.list && opts.masked_mark() == 0 {
        usage(zero_mark(opts));
    }
    if let Some(path) = opts
        .output_file
        .as_deref()
        .filter(|p| p.exists() && !opts.force)
    {
        usage(format!(
            "{} exists: pass --force to replace it",
            path.display()
        ));
    }
    let (code, msg) = command::check(opts.command.first()?).err()?;
    eprintln!("ipft: {msg}");
    Some(ExitCode::from(code))
}

/// Why a mark that is 0 under its mask is refused: it would match every
/// unmarked packet (ipftrace2 refuses mark 0 too).
fn zero_mark(opts: &Options) -> String {
    let everything = "would trace every unmarked packet";
    match opts.mark.unwrap_or(0) {
        0 => format!("mark 0 {everything}: choose a non-zero mark"),
        mark => format!(
            "mark {mark:#x} & mask {:#x} is 0, which {everything}: choose a mark with bits inside the mask",
            opts.mask
        ),
    }
}

/// `--generate`: the man page and completions come from the same clap
/// definitions as `--help`.
fn generate(kind: Generate) -> ExitCode {
    let mut cmd = Options::command();
    let mut out = io::stdout();
    let shell = match kind {
        Generate::Man => {
            return match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Generate::CompleteBash => clap_complete::Shell::Bash,
        Generate::CompleteZsh => clap_complete::Shell::Zsh,
        Generate::CompleteFish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "ipft", &mut out);
    ExitCode::SUCCESS
}

fn what(backend: &dyn Backend) -> &'static str {
    match backend.target_kind() {
        TargetKind::Function => "function",
        TargetKind::Tracepoint => "tracepoint",
    }
}

/// Every target the backend can trace, with addresses for functions.
fn candidates(
    backend: &dyn Backend,
    kernel: KernelBtf,
    kallsyms: Option<Background<String>>,
    opts: &Options,
) -> Result<Vec<Target>> {
    let verbose = opts.verbose;
    let found: Vec<Candidate> = match backend.target_kind() {
        TargetKind::Tracepoint => discover::tracepoints(&kernel.vmlinux),
        TargetKind::Function => {
            let kernel = KernelBtf {
                modules: KernelBtf::load_modules(&opts.btf_dir, &kernel.vmlinux),
                ..kernel
            };
            // BTF first: /proc/kallsyms is still being read meanwhile.
            let functions = discover::functions(&kernel);
            progress::step(verbose, "BTF functions scanned");
            let kallsyms = match kallsyms {
                Some(reading) => reading.take()?,
                None => discover::read_kallsyms()?,
            };
            let (found, missing) = discover::resolve_addresses(functions, &kallsyms);
            if verbose {
                eprintln!("{missing} functions with an skb parameter are not in /proc/kallsyms (inlined): skipped");
            }
            found
        }
    };
    let mut skipped = 0;
    let targets: Vec<Target> = found
        .into_iter()
        .filter(|c| {
            let ok = c.exclusion.is_none() && backend.check(&c.target).is_ok();
            skipped += usize::from(!ok);
            ok
        })
        .map(|c| c.target)
        .collect();
    if verbose && skipped > 0 {
        eprintln!(
            "{skipped} with an skb parameter cannot be traced by the {} backend: skipped",
            backend.name()
        );
    }
    Ok(targets)
}

fn list(targets: &[Target], json: bool) -> Result<()> {
    if !json {
        eprintln!("{}", render::list_header());
    }
    let mut out = io::stdout().lock();
    session::ignore_broken_pipe(render::list(&mut out, targets, json).and_then(|()| out.flush()))
}

/// Loading BPF programs needs CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN.
fn check_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("ipft needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load BPF programs: run it with sudo")
}
