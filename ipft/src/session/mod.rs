//! A tracing session: attach (stoppable by a signal), signal readiness,
//! stream events until a reason to stop, print, then detach. The wiring of
//! the attach, trace and report stages for one run.
mod command;
mod ready;
mod signals;
mod startup;

use std::{
    collections::HashMap,
    io,
    path::Path,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use anyhow::{bail, Context, Result};
use ipft_output::pcapng::Pcapng;

pub use command::check as check_command;
use command::CommandStdout;
pub use signals::Signals;
pub use startup::{check_privileges, filter_function, programs, raise_open_files};

use crate::{
    attach::{self, detach, programs::Maps, track, Attached, Backend},
    cli::{Options, Output, Tracer},
    discover::{roles, Target},
    report::{
        collect::{Collector, Settings, Stop, Tally},
        progress::{AttachWatch, Progress},
        sink::{ignore_broken_pipe, Sink},
    },
    sys::perf::PerfRing,
    timing,
    trace::{
        group::Record,
        stream::{self, Stream},
    },
};

/// What a session needs besides the options: the chosen backend, the
/// created maps and perf rings, the targets, and the drop reasons' names.
pub struct Prepared {
    pub backend: Box<dyn Backend>,
    pub maps: Maps,
    pub rings: Vec<PerfRing>,
    pub targets: Vec<Target>,
    /// Targets `-r`/`--module-regex` left out.
    pub filtered: usize,
    pub reasons: HashMap<u32, String>,
}

pub async fn trace(opts: &Options, prepared: Prepared, mut signals: Signals) -> Result<ExitCode> {
    let Prepared {
        backend,
        maps,
        rings,
        targets,
        filtered,
        reasons,
    } = prepared;
    let (sink, capture_sink) = sinks(opts)?;
    ready::clear_stale(opts.ready_file.as_deref());
    let mut progress = Progress::new(opts.output == Output::Aggregate);

    let Some((backend, ebpf, attached)) =
        attach_cancellable(opts, backend, maps, targets, filtered, &mut signals).await?
    else {
        eprintln!("Interrupted while attaching: nothing was traced");
        return Ok(ExitCode::from(130));
    };
    if let Some(summary) = attached.failure_summary() {
        eprintln!("{summary}");
    }
    let Attached {
        mut links,
        targets,
        index,
        ..
    } = attached;
    let roles = roles::roles(&targets);
    if opts.tracks() {
        track::mark_frees(&ebpf, &index, &roles)?;
        let (clone_links, failed) = track::follow_clones(backend.as_ref(), &ebpf, &targets)?;
        if opts.verbose && failed > 0 {
            eprintln!("--track: {failed} cloning functions could not be hooked: their copies are followed only while they match");
        }
        links.extend(clone_links);
    }
    timing::step(opts.verbose, "attached");
    let mut stream = Stream::new(rings, index, opts.write.is_some())?;
    let probe_server = opts.enable_probe_server.then_some(opts.probe_server_port);
    let ready = ready::signal(opts.ready_file.as_deref(), probe_server).await?;
    progress.ready();
    let mut child = match opts.command.is_empty() {
        true => None,
        false => Some(command::spawn(
            &opts.command,
            CommandStdout::for_options(opts),
        )?),
    };

    let captures = match capture_sink {
        Some(sink) => {
            Some(Pcapng::new(sink, opts.snaplen).context("cannot start the pcapng output")?)
        }
        None => None,
    };
    let stacks = Some(ebpf.fd(ipft_common::maps::STACKS.name)?);
    let settings = report_settings(opts);
    let mut collector = Collector::new(settings, targets, roles, reasons, sink, captures, stacks);
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
        crate::testhook::panic_on_event(collector.tally.seen);
        progress.traces(collector.tally.seen);
    };
    timing::step(opts.verbose, "tracing stopped");
    // ipft stopped on its own (signal, --duration, --max-traces, closed
    // output): the command must not outlive it.
    if let Some(child) = child.as_mut().filter(|_| !matches!(stop, Stop::Command(_))) {
        command::stop(child).await;
    }
    // Events already in the kernel's buffers belong to this run.
    if !matches!(stop, Stop::StdoutClosed | Stop::MaxTraces) {
        collector.consume(stream.drain_all())?;
    }
    drop(stream);
    timing::step(opts.verbose, "last events read");
    progress.done(collector.tally.seen);
    collector.tally.lost = collector.tally.lost.max(stream::lost_in_kernel(&ebpf));
    let track_full = if opts.tracks() {
        track::full_count(&ebpf)
    } else {
        0
    };

    // Print, then detach: the user gets the table without waiting for the
    // kernel to tear down every probe. A second signal exits at once.
    let verbose = opts.verbose;
    let finish = tokio::task::spawn_blocking(move || {
        let stored = collector.stored();
        let (written, tally) = collector.finish(verbose);
        report(&tally, stored, track_full, verbose);
        drop(ready);
        timing::step(verbose, "output written; detaching");
        let count = links.len();
        match detach::background_wanted(count).then(detach::to_background) {
            Some(Some(pid)) => eprintln!(
                "ipft: removing {count} probes in the background (pid {pid}): the kernel takes a while"
            ),
            _ => detach::detach_all(links),
        }
        drop(backend);
        drop(ebpf);
        timing::step(verbose, "detached");
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
    maps: Maps,
    targets: Vec<Target>,
    filtered: usize,
    signals: &mut Signals,
) -> Result<Option<(Box<dyn Backend>, Maps, Attached)>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let worker_cancel = Arc::clone(&cancel);
    let verbose = opts.verbose;
    let mut worker = tokio::task::spawn_blocking(move || {
        let mut backend = backend;
        let mut watch = AttachWatch {
            progress: Progress::new(false),
            verbose,
        };
        let cancelled = || worker_cancel.load(Ordering::Relaxed);
        let attached = attach::attach_all(
            backend.as_mut(),
            &maps,
            targets,
            filtered,
            &cancelled,
            &mut watch,
        );
        watch.progress.attached(&attached.counts);
        (backend, maps, attached)
    });
    let (backend, maps, attached) = tokio::select! {
        done = &mut worker => done?,
        () = signals.recv() => {
            cancel.store(true, Ordering::Relaxed);
            let (_backend, _loaded, attached) = worker.await?;
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
    Ok(Some((backend, maps, attached)))
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
    if let Some(fates) = &tally.fates {
        eprintln!("{fates}");
    }
    if tally.lost > 0 {
        let smaller = match tally.written {
            Some(_) => " or a smaller --snaplen",
            None => "",
        };
        eprintln!(
            "Lost {} events (the perf buffer was full: try a larger --perf-page-count{smaller})",
            tally.lost
        );
    }
    if tally.unreadable > 0 {
        eprintln!(
            "Lost {} captures: the packet's bytes could not be read there (the rows are in the output, not in the pcapng file)",
            tally.unreadable
        );
    }
    if tally.unstored > 0 {
        eprintln!(
            "Stored the first {} events (--max-events); {} more were counted, not stored",
            stored.0, tally.unstored
        );
    }
    if verbose {
        eprintln!(
            "{} events of {} packets; ignored {} malformed or unknown events",
            stored.0, stored.1, tally.bad
        );
        // For `cargo xtask bench`: what each stored event costs.
        eprintln!("{} bytes per stored event", std::mem::size_of::<Record>());
        if let Some(w) = tally.written {
            let per_packet = w.bytes as f64 / stored.1.max(1) as f64;
            eprintln!(
                "-w: {} frames, {} bytes written ({per_packet:.0} bytes per packet)",
                w.frames, w.bytes
            );
        }
    }
}

/// What the report needs of the options.
fn report_settings(opts: &Options) -> Settings {
    Settings {
        output: opts.output,
        fields: opts.field.clone(),
        graph: opts.tracer == Tracer::FunctionGraph,
        max_traces: opts.max_traces,
        max_events: opts.max_events,
        capture_at: opts.capture_at.clone(),
    }
}

/// Where the table or json go, and where `-w` writes pcapng: `-w -` takes
/// stdout, and the table or json then go to stderr (or `--output-file`).
fn sinks(opts: &Options) -> Result<(Sink, Option<Sink>)> {
    let capture_to_stdout = opts.write.as_deref() == Some(Path::new("-"));
    let sink = match (capture_to_stdout, opts.output_file.as_deref()) {
        (true, None) => Sink::stderr(),
        (_, path) => Sink::open(path, opts.force, opts.output == Output::Json)?,
    };
    let capture = match opts.write.as_deref() {
        None => None,
        Some(_) if capture_to_stdout => Some(Sink::open(None, false, true)?),
        Some(path) => Some(Sink::open_capture(path)?),
    };
    Ok((sink, capture))
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
