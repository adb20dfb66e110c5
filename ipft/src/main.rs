//! ipft: which kernel functions did each marked packet go through?
//!
//! Data flows one way, one module per step:
//! [`cli`] options → [`discover`] targets → [`attach`] (a [`backend`]) →
//! [`stream`] events → [`group`] per packet → [`render`] table or JSON.
mod attach;
mod backend;
mod cli;
mod command;
mod discover;
mod group;
mod output;
mod progress;
mod ready;
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
    cli::{BackendChoice, Generate, Options, Output, Tracer},
    discover::{Candidate, Filter, KernelBtf, Target, TargetKind},
    group::Packets,
    output::Sink,
    progress::Progress,
    stream::Stream,
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
        return list(&targets, opts.output == Output::Json).map(|()| ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!(
            "no {} matches the given -r/--module-regex (see ipft -l)",
            what(backend.as_ref())
        );
    }
    trace(opts, backend, ebpf, targets, filtered.len()).await
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
        usage(
            "mark 0 (after --mask) would trace every unmarked packet: choose a non-zero mark"
                .into(),
        );
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

fn list(targets: &[Target], json: bool) -> Result<()> {
    if !json {
        eprintln!("{}", render::list_header());
    }
    let mut out = io::stdout().lock();
    ignore_broken_pipe(render::list(&mut out, targets, json).and_then(|()| out.flush()))
}

/// Why tracing stopped.
enum Stop {
    Signal,
    Duration,
    MaxTraces,
    StdoutClosed,
    Command(u8),
}

/// What the run saw, for the closing lines on stderr.
#[derive(Default)]
struct Tally {
    seen: u64,
    lost: u64,
    bad: u64,
}

async fn trace(
    opts: &Options,
    backend: Box<dyn Backend>,
    ebpf: Ebpf,
    targets: Vec<Target>,
    filtered: usize,
) -> Result<ExitCode> {
    let mut signals = Signals::new()?;
    let mut sink = Sink::open(
        opts.output_file.as_deref(),
        opts.force,
        opts.output == Output::Json,
    )?;
    ready::clear_stale(opts.ready_file.as_deref());
    let mut progress = Progress::new(opts.output == Output::Aggregate);

    let Some((mut ebpf, attached)) =
        attach_cancellable(opts, backend, ebpf, targets, filtered, &mut signals).await?
    else {
        eprintln!("Interrupted while attaching: nothing was traced");
        return Ok(ExitCode::from(130));
    };
    let Attached {
        links,
        targets,
        index,
        ..
    } = attached;
    let mut stream = Stream::open(&mut ebpf, opts.perf_page_count, index)?;
    let probe_server = opts.enable_probe_server.then_some(opts.probe_server_port);
    let ready = ready::signal(opts.ready_file.as_deref(), probe_server).await?;
    progress.ready();
    let mut child = match opts.command.is_empty() {
        true => None,
        false => Some(command::spawn(&opts.command)?),
    };

    let mut packets = Packets::new();
    let mut tally = Tally::default();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let stop = loop {
        let batch = tokio::select! {
            batch = stream.next() => batch,
            () = signals.recv() => break Stop::Signal,
            () = sleep_until(deadline) => break Stop::Duration,
            status = wait(&mut child) => break Stop::Command(command::exit_code(status?)),
        };
        if let Some(stop) = consume(opts, batch, &mut tally, &mut packets, &mut sink, &targets)? {
            break stop;
        }
        progress.traces(tally.seen);
    };
    // Events already in the kernel's buffers belong to this run.
    if !matches!(stop, Stop::StdoutClosed | Stop::MaxTraces) {
        consume(
            opts,
            stream.drain_all(),
            &mut tally,
            &mut packets,
            &mut sink,
            &targets,
        )?;
    }
    drop(stream);
    progress.done(tally.seen);

    // Print, then detach: the user gets the table without waiting for the
    // kernel to tear down every probe. A second signal exits at once.
    let graph = opts.tracer == Tracer::FunctionGraph;
    let aggregate = opts.output == Output::Aggregate;
    let verbose = opts.verbose;
    let finish = tokio::task::spawn_blocking(move || {
        let stored = (packets.events(), packets.packets());
        let written = match aggregate {
            true => render::aggregate(&mut sink, &packets.into_groups(), &targets, graph)
                .and_then(|()| sink.finish()),
            false => sink.finish(),
        };
        report(&tally, stored, verbose);
        drop(ready);
        drop(links);
        written
    });
    tokio::select! {
        written = finish => ignore_broken_pipe(written?)?,
        () = signals.recv() => std::process::exit(130),
    }
    Ok(match stop {
        Stop::Command(code) => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    })
}

/// Attaches off the runtime, so a signal can stop it between two targets.
/// `None` when a signal interrupted it (what was attached is detached).
async fn attach_cancellable(
    opts: &Options,
    backend: Box<dyn Backend>,
    ebpf: Ebpf,
    targets: Vec<Target>,
    filtered: usize,
    signals: &mut Signals,
) -> Result<Option<(Ebpf, Attached)>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let worker_cancel = Arc::clone(&cancel);
    let verbose = opts.verbose;
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
    let (ebpf, attached) = tokio::select! {
        done = &mut worker => done?,
        () = signals.recv() => {
            cancel.store(true, Ordering::Relaxed);
            drop(worker.await?);
            return Ok(None);
        }
    };
    if attached.counts.succeeded == 0 {
        bail!(
            "no {} could be attached: {}",
            what_kind(&attached),
            attached.first_error.as_deref().unwrap_or("unknown reason")
        );
    }
    Ok(Some((ebpf, attached)))
}

fn what_kind(attached: &Attached) -> &'static str {
    match attached.first_error {
        Some(_) => "target",
        None => "function",
    }
}

/// Takes one batch: counts it, streams or stores its records. Returns why
/// to stop, if this batch is a reason to.
fn consume(
    opts: &Options,
    mut batch: stream::Batch,
    tally: &mut Tally,
    packets: &mut Packets,
    sink: &mut Sink,
    targets: &[Target],
) -> Result<Option<Stop>> {
    let mut stop = None;
    if let Some(max) = opts.max_traces {
        let room = max.saturating_sub(tally.seen);
        if batch.records.len() as u64 >= room {
            batch.records.truncate(room as usize);
            stop = Some(Stop::MaxTraces);
        }
    }
    tally.seen += batch.records.len() as u64;
    tally.lost += batch.lost;
    tally.bad += batch.bad;
    if opts.output == Output::Json {
        if !write_json(sink, &batch.records, targets)? {
            return Ok(Some(Stop::StdoutClosed));
        }
    } else {
        batch.records.into_iter().for_each(|r| packets.push(r));
    }
    Ok(stop)
}

/// The closing lines on stderr.
fn report(tally: &Tally, stored: (usize, usize), verbose: bool) {
    if tally.lost > 0 {
        eprintln!(
            "Lost {} events (the perf buffer was full: try a larger --perf-page-count)",
            tally.lost
        );
    }
    if verbose {
        eprintln!(
            "Stored {} events of {} packets; ignored {} malformed or unknown events",
            stored.0, stored.1, tally.bad
        );
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn wait(child: &mut Option<tokio::process::Child>) -> io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, as one stream: both mean "stop".
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
    }
}

/// Writes json lines; false once the reader closed its end.
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
        Err(e) => Err(e).context("cannot write the output"),
    }
}

fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the output"),
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
