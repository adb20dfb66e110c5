//! ipft: which kernel functions did each marked packet go through?
//!
//! Data flows one way, one module per step:
//! [`cli`] options → [`discover`] targets → [`attach`] (a [`backend`]) →
//! [`stream`] events → [`group`] per packet → [`render`] table or JSON.
mod attach;
mod backend;
mod cli;
mod discover;
mod group;
mod progress;
mod render;
mod stream;

use std::{
    io::{self, Write},
    path::Path,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use anyhow::{bail, Context, Result};
use aya::{Ebpf, EbpfLoader};
use clap::{CommandFactory, Parser};
use ipft_common::Config;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    attach::Attached,
    backend::Backend,
    cli::{BackendChoice, Options, Output, Tracer},
    discover::{Candidate, Filter, KernelBtf, Target, TargetKind},
    group::Packets,
    progress::Progress,
};

/// The eBPF programs, built by `cargo xtask build` and embedded here.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("IPFT_EBPF_OBJECT"));

fn main() -> ExitCode {
    let opts = Options::parse();
    if !opts.list && opts.masked_mark() == 0 {
        Options::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "mark 0 (after --mask) would trace every unmarked packet: choose a non-zero mark",
            )
            .exit();
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
            if opts.verbose {
                eprintln!("ipft: {err:#}");
            } else {
                eprintln!("ipft: {err}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(opts: &Options) -> Result<ExitCode> {
    check_privileges()?;
    let btf_dir = Path::new(discover::SYS_BTF_DIR);
    let kernel = KernelBtf::load(btf_dir, false)?;
    let config = Config {
        mark: opts.masked_mark(),
        mask: opts.mask,
        mark_offset: discover::mark_offset(&kernel.vmlinux)?,
        _reserved: 0,
    };
    let mut ebpf = load_programs(&config)?;

    let mut fentry_probe = || {
        let probe = probe_target();
        backend::ftrace::probe(&mut ebpf, &probe)
    };
    let (choice, why) = backend::choose(opts.backend, opts.tracer, &mut fentry_probe)?;
    let backend = backend::build(choice, opts.tracer)?;
    if opts.backend == BackendChoice::Auto {
        eprintln!("Using the {} backend: {why}", backend.name());
    }

    let candidates = candidates(backend.as_ref(), kernel, opts.verbose)?;
    let filter = Filter {
        name: opts.regex.as_ref(),
        module: opts.module_regex.as_ref(),
    };
    let (targets, filtered): (Vec<Target>, Vec<Target>) =
        candidates.into_iter().partition(|t| filter.allows(t));
    if opts.list {
        return list(&targets).map(|()| ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!(
            "no {} matches the given -r/--module-regex (see ipft -l)",
            what(backend.as_ref())
        );
    }
    trace(opts, backend, ebpf, targets, filtered.len()).await
}

/// A vmlinux function every kernel has, with the skb first, to probe fentry.
fn probe_target() -> Target {
    Target {
        name: "consume_skb".into(),
        module: "vmlinux".into(),
        addr: 0,
        skb_pos: 0,
        nargs: 1,
        kind: TargetKind::Function,
    }
}

fn what(backend: &dyn Backend) -> &'static str {
    match backend.target_kind() {
        TargetKind::Function => "function",
        TargetKind::Tracepoint => "tracepoint",
    }
}

/// Loads the eBPF object with the filter baked in as read-only globals.
fn load_programs(config: &Config) -> Result<Ebpf> {
    EbpfLoader::new()
        .override_global("CONFIG", config, true)
        .load(EBPF_OBJECT)
        .context("cannot load ipft's eBPF programs into the kernel")
}

/// Every target the backend can trace, with addresses for functions.
fn candidates(backend: &dyn Backend, kernel: KernelBtf, verbose: bool) -> Result<Vec<Target>> {
    let found: Vec<Candidate> = match backend.target_kind() {
        TargetKind::Tracepoint => discover::tracepoints(&kernel.vmlinux),
        TargetKind::Function => {
            let kernel = KernelBtf {
                modules: KernelBtf::load_modules(Path::new(discover::SYS_BTF_DIR), &kernel.vmlinux),
                ..kernel
            };
            let (found, missing) = discover::resolve_addresses(
                discover::functions(&kernel),
                &discover::read_kallsyms()?,
            );
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

fn list(targets: &[Target]) -> Result<()> {
    eprintln!("{}", render::list_header());
    let mut out = io::stdout().lock();
    match render::list(&mut out, targets, false).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

async fn trace(
    opts: &Options,
    backend: Box<dyn Backend>,
    ebpf: Ebpf,
    targets: Vec<Target>,
    filtered: usize,
) -> Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let cancel = Arc::new(AtomicBool::new(false));
    let mut progress = Progress::new(opts.output == Output::Aggregate);

    // Attaching blocks for a while; run it off the runtime so a signal can
    // stop it between two functions.
    let verbose = opts.verbose;
    let worker_cancel = Arc::clone(&cancel);
    let mut worker = tokio::task::spawn_blocking(move || {
        let (mut backend, mut ebpf) = (backend, ebpf);
        let mut progress = Progress::new(false);
        let attached = attach::attach_all(
            backend.as_mut(),
            &mut ebpf,
            targets,
            filtered,
            &worker_cancel,
            &mut progress,
            verbose,
        );
        (ebpf, attached)
    });
    let (mut ebpf, attached) = tokio::select! {
        done = &mut worker => done?,
        _ = sigint.recv() => return cancelled(&cancel, worker).await,
        _ = sigterm.recv() => return cancelled(&cancel, worker).await,
    };
    if attached.counts.succeeded == 0 {
        bail!(
            "no {} could be attached: {}",
            if attached.targets.is_empty() {
                "target"
            } else {
                "function"
            },
            attached.first_error.unwrap_or_default()
        );
    }
    let Attached {
        links,
        targets,
        index,
        ..
    } = attached;
    let mut events = stream::start(&mut ebpf, opts.perf_page_count, index)?;
    progress.ready();

    let mut packets = Packets::new();
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let (mut seen, mut lost, mut bad) = (0u64, 0u64, 0u64);
    loop {
        let batch = tokio::select! {
            batch = events.recv() => match batch { Some(b) => b, None => break },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        };
        seen += batch.records.len() as u64;
        lost += batch.lost;
        bad += batch.bad;
        if opts.output == Output::Json {
            if !write_json(&mut stdout, &batch.records, &targets)? {
                break; // stdout closed: the reader has what it wanted
            }
        } else {
            batch.records.into_iter().for_each(|r| packets.push(r));
        }
        progress.traces(seen);
    }
    drop(events);
    progress.done(seen);
    let mut packets_stored = (0, 0);
    if opts.output == Output::Aggregate {
        packets_stored = (packets.events(), packets.packets());
        let groups = packets.into_groups();
        let written = render::aggregate(
            &mut stdout,
            &groups,
            &targets,
            opts.tracer == Tracer::FunctionGraph,
        )
        .and_then(|()| stdout.flush());
        ignore_broken_pipe(written)?;
    }
    if lost > 0 {
        eprintln!("Lost {lost} events (the perf buffer was full: try a larger --perf-page-count)");
    }
    if opts.verbose {
        eprintln!(
            "Stored {} events of {} packets; ignored {bad} malformed or unknown events",
            packets_stored.0, packets_stored.1
        );
    }
    drop(links); // detach only after the output is out
    Ok(ExitCode::SUCCESS)
}

/// A signal arrived while attaching: stop, detach what was attached, exit.
async fn cancelled(
    cancel: &AtomicBool,
    worker: tokio::task::JoinHandle<(Ebpf, Attached)>,
) -> Result<ExitCode> {
    cancel.store(true, Ordering::Relaxed);
    let (_ebpf, attached) = worker.await?;
    drop(attached);
    eprintln!("Interrupted while attaching: nothing was traced");
    Ok(ExitCode::from(130))
}

/// Writes json lines; false once stdout is closed.
fn write_json(
    out: &mut impl Write,
    records: &[stream::Record],
    targets: &[Target],
) -> Result<bool> {
    let written = records
        .iter()
        .try_for_each(|r| render::json_event(out, r, targets))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
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
