//! A tracing session: attach (stoppable by a signal), signal readiness,
//! stream events until a reason to stop, print, then detach.
use std::{
    collections::HashMap,
    io,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crate::backend::object::Loaded;
use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    attach::{self, Attached},
    backend::Backend,
    cli::{BackendChoice, Options, Output},
    collect::{Collector, Tally},
    command, detach,
    discover::Target,
    group::{self, PacketIds, Packets},
    output::Sink,
    progress::{self, Progress},
    ready,
    stream::{self, Stream},
    sys::perf::PerfRing,
    track,
};

/// Why tracing stopped.
pub enum Stop {
    Signal,
    Duration,
    MaxTraces,
    StdoutClosed,
    Command(u8),
}

pub async fn trace(
    opts: &Options,
    (backend_choice, backend): (BackendChoice, Box<dyn Backend>),
    (ebpf, rings): (Loaded, Vec<PerfRing>),
    targets: Vec<Target>,
    filtered: usize,
    reasons: HashMap<u32, String>,
    mut signals: Signals,
) -> Result<ExitCode> {
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
    progress::step(opts.verbose, "attached");
    let mut stream = Stream::new(rings, index)?;
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
        max_events: opts
            .max_events
            .unwrap_or_else(|| group::default_max_events(!opts.field.is_empty())),
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
        crate::testhook::panic_on_event(collector.tally.seen);
        progress.traces(collector.tally.seen);
    };
    progress::step(opts.verbose, "tracing stopped");
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
    progress::step(opts.verbose, "last events read");
    progress.done(collector.tally.seen);
    collector.tally.lost = collector.tally.lost.max(stream::lost_in_kernel(&ebpf));
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
        let written = collector.finish(verbose);
        report(&tally, stored, track_full, verbose);
        drop(ready);
        progress::step(verbose, "output written; detaching");
        let count = links.len();
        match detach::background_wanted(count).then(detach::to_background) {
            Some(Some(pid)) => eprintln!(
                "ipft: removing {count} probes in the background (pid {pid}): the kernel takes a while"
            ),
            _ => detach::detach_all(links),
        }
        drop(ebpf);
        progress::step(verbose, "detached");
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
    ebpf: Loaded,
    targets: Vec<Target>,
    filtered: usize,
    signals: &mut Signals,
) -> Result<Option<(Loaded, Attached)>> {
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
        eprintln!(
            "{} bytes per stored event",
            std::mem::size_of::<crate::stream::Record>()
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
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers: from here on SIGINT and SIGTERM are caught
    /// (and remembered until the session looks), not fatal.
    pub fn new() -> Result<Self> {
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
pub fn ok_unless_closed(written: io::Result<()>) -> Result<bool> {
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write the output"),
    }
}

pub fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the output"),
    }
}
