//! ipft: which kernel functions did each marked packet go through?
//!
//! Data flows one way, one module per step:
//! [`cli`] options → [`discover`] targets → [`attach`] (a [`backend`]) →
//! [`stream`] events → [`group`] per packet → [`render`] table or JSON.
mod attach;
mod backend;
mod cli;
mod command;
mod detach;
mod discover;
mod group;
mod output;
mod progress;
mod ready;
mod render;
mod stream;
mod summary;
mod sys;
mod track;

use std::{
    collections::HashMap,
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
    group::{PacketIds, Packets},
    output::Sink,
    progress::Progress,
    render::Extras,
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
    check_privileges()?;
    let btf_dir = Path::new(discover::SYS_BTF_DIR);
    let kernel = KernelBtf::load(btf_dir, false)?;
    let config = Config {
        mark: opts.masked_mark(),
        mask: opts.mask,
        flags: if opts.track {
            ipft_common::CONFIG_TRACK
        } else {
            0
        },
        offsets: discover::offsets(&kernel.vmlinux)?,
    };
    let mut ebpf = load_programs(&config)?;

    let mut fentry_probe = || {
        let probe = probe_target();
        backend::ftrace::probe(&mut ebpf, &probe)
    };
    let (choice, why) = backend::choose(
        opts.backend,
        opts.tracer,
        &mut fentry_probe,
        &mut backend::kprobe_multi::probe,
    )?;
    let backend = backend::build(choice, opts.tracer)?;
    if opts.backend == BackendChoice::Auto {
        eprintln!("Using the {} backend: {why}", backend.name());
    }

    let reasons = discover::drop_reasons(&kernel.vmlinux);
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
    trace(
        opts,
        (choice, backend),
        ebpf,
        targets,
        filtered.len(),
        reasons,
    )
    .await
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
        reason_pos: None,
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

/// Turns events into output: names packets, then streams json lines or
/// stores records for the table.
struct Collector {
    opts: Options,
    targets: Vec<Target>,
    reasons: HashMap<u32, String>,
    ids: PacketIds,
    packets: Packets,
    sink: Sink,
    tally: Tally,
}

impl Collector {
    /// Takes one batch. Returns why to stop, if this batch is a reason to.
    fn consume(&mut self, mut batch: stream::Batch) -> Result<Option<Stop>> {
        let mut stop = None;
        if let Some(max) = self.opts.max_traces {
            let room = max.saturating_sub(self.tally.seen);
            if batch.events.len() as u64 >= room {
                batch.events.truncate(room as usize);
                stop = Some(Stop::MaxTraces);
            }
        }
        self.tally.seen += batch.events.len() as u64;
        self.tally.lost += batch.lost;
        self.tally.bad += batch.bad;
        let keep_fields = !self.opts.field.is_empty();
        let json = self.opts.output == Output::Json;
        for event in &batch.events {
            let func = event.func as u32;
            let seen = self.ids.observe(event, func);
            let record = group::record(event, func, seen.packet);
            if json {
                let extras = Extras {
                    reasons: Some(&self.reasons),
                    fields: &self.opts.field,
                    details: None,
                };
                let snapshot = keep_fields.then_some(event);
                let seen = render::JsonSeen {
                    summary: seen.summary.as_deref(),
                    parent: seen.parent,
                };
                let written = render::json_event(
                    &mut self.sink,
                    &record,
                    &self.targets,
                    &extras,
                    seen,
                    snapshot,
                );
                if !ok_unless_closed(written)? {
                    return Ok(Some(Stop::StdoutClosed));
                }
            } else {
                self.packets
                    .push_event(record, seen, keep_fields.then_some(event));
            }
        }
        if json && !ok_unless_closed(self.sink.flush())? {
            return Ok(Some(Stop::StdoutClosed));
        }
        Ok(stop)
    }

    /// Prints the table (aggregate mode) and closes the output.
    fn finish(mut self) -> io::Result<()> {
        if self.opts.output == Output::Aggregate {
            let (groups, details) = std::mem::take(&mut self.packets).into_groups();
            let extras = Extras {
                reasons: Some(&self.reasons),
                fields: &self.opts.field,
                details: Some(&details),
            };
            let graph = self.opts.tracer == Tracer::FunctionGraph;
            render::aggregate(&mut self.sink, &groups, &self.targets, graph, &extras)?;
        }
        self.sink.finish()
    }
}

async fn trace(
    opts: &Options,
    (backend_choice, backend): (BackendChoice, Box<dyn Backend>),
    ebpf: Ebpf,
    targets: Vec<Target>,
    filtered: usize,
    reasons: HashMap<u32, String>,
) -> Result<ExitCode> {
    let mut signals = Signals::new()?;
    let sink = Sink::open(
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
    let roles = group::roles(&targets);
    let mut links = links;
    if opts.track {
        track::mark_frees(&mut ebpf, &index, &roles)?;
        let (clone_links, failed) =
            track::follow_clones(&mut ebpf, backend_choice, &targets, &index)?;
        if opts.verbose && failed > 0 {
            eprintln!("--track: {failed} cloning functions could not be hooked: their copies are followed only while marked");
        }
        links.extend(clone_links);
    }
    let mut stream = Stream::open(&ebpf, opts.perf_page_count, opts.perf_wakeup_events, index)?;
    let probe_server = opts.enable_probe_server.then_some(opts.probe_server_port);
    let ready = ready::signal(opts.ready_file.as_deref(), probe_server).await?;
    progress.ready();
    let mut child = match opts.command.is_empty() {
        true => None,
        false => Some(command::spawn(&opts.command)?),
    };

    let mut collector = Collector {
        opts: opts.clone(),
        targets,
        reasons,
        ids: PacketIds::new(roles),
        packets: Packets::new(),
        sink,
        tally: Tally::default(),
    };
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let stop = loop {
        let batch = tokio::select! {
            batch = stream.next() => batch,
            () = signals.recv() => break Stop::Signal,
            () = sleep_until(deadline) => break Stop::Duration,
            status = wait(&mut child) => break Stop::Command(command::exit_code(status?)),
        };
        if let Some(stop) = collector.consume(batch)? {
            break stop;
        }
        progress.traces(collector.tally.seen);
    };
    // Events already in the kernel's buffers belong to this run.
    if !matches!(stop, Stop::StdoutClosed | Stop::MaxTraces) {
        collector.consume(stream.drain_all())?;
    }
    drop(stream);
    progress.done(collector.tally.seen);
    let track_full = if opts.track {
        track::full_count(&ebpf)
    } else {
        0
    };

    // Print, then detach: the user gets the table without waiting for the
    // kernel to tear down every probe. A second signal exits at once.
    let verbose = opts.verbose;
    let finish = tokio::task::spawn_blocking(move || {
        let stored = (collector.packets.events(), collector.ids.count());
        let tally = std::mem::take(&mut collector.tally);
        let written = collector.finish();
        report(&tally, stored, track_full, verbose);
        drop(ready);
        detach::detach_all(links);
        drop(ebpf);
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
            let (_ebpf, attached) = worker.await?;
            detach::detach_all(attached.links);
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

/// The closing lines on stderr.
fn report(tally: &Tally, stored: (usize, usize), track_full: u64, verbose: bool) {
    if track_full > 0 {
        eprintln!(
            "--track: {track_full} packets could not be followed past a mark change: the map of {} tracked skbs was full",
            ipft_common::TRACKED_MAX
        );
    }
    if tally.lost > 0 {
        eprintln!(
            "Lost {} events (the perf buffer was full: try a larger --perf-page-count)",
            tally.lost
        );
    }
    if verbose {
        eprintln!(
            "{} events of {} packets; ignored {} malformed or unknown events",
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

/// `Ok(false)` when the reader closed its end of the output.
fn ok_unless_closed(written: io::Result<()>) -> Result<bool> {
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
