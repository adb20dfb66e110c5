//! ipft: which kernel functions did each packet go through?
//!
//! Data flows one way, one module per stage (see ARCHITECTURE.md):
//! [`cli`] options → [`select`] which packets → [`discover`] targets →
//! [`attach`] (a backend) → [`trace`] events, per packet → [`report`]
//! table, JSON or list. [`session`] runs one trace through the stages; this
//! file only wires them.
mod attach;
mod cli;
mod discover;
#[cfg(test)]
mod layering;
mod par;
#[cfg(test)]
mod random;
mod report;
mod select;
mod session;
mod sys;
mod testhook;
mod timing;
mod trace;

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};

use crate::{
    attach::{choose, programs::Maps},
    cli::{BackendChoice, Generate, Options, Output},
    discover::{Filter, KernelBtf, Listing, Source, Target, TargetKind},
    par::Background,
    report::{
        progress::{paint, RED},
        sink::ignore_broken_pipe,
    },
    session::Signals,
    sys::{bpf::Insn, rlimit},
    trace::stream,
};

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Some(kind) = opts.generate {
        return generate(kind);
    }
    if let Some(code) = validate(&opts) {
        return code;
    }
    // Compiled before anything else happens: a filter libpcap rejects, or
    // that ipft cannot translate, is a usage error.
    let filter = match opts.filter.as_deref().map(select::Filter::compile) {
        Some(Err(why)) => {
            eprintln!("ipft: {why}");
            return ExitCode::from(2);
        }
        Some(Ok(filter)) => Some(filter),
        None => None,
    };
    // So are a namespace or a device that is not there: resolved once,
    // here, to the numbers the programs compare.
    let place = match select::resolve_place(opts.netns.as_ref(), opts.dev.as_ref()) {
        Ok(place) => place,
        Err(why) => {
            eprintln!("ipft: {why}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(&opts, filter.as_ref(), place)));
    match result {
        Ok(code) => code,
        Err(err) => {
            let prefix = paint("ipft:", RED);
            if opts.verbose {
                eprintln!("{prefix} {err:#}");
            } else {
                eprintln!("{prefix} {err}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(
    opts: &Options,
    filter: Option<&select::Filter>,
    place: Option<select::Place>,
) -> Result<ExitCode> {
    // First of all: a Ctrl-C during start-up must stop ipft, not be lost.
    timing::start_clock();
    let signals = Signals::new()?;
    check_privileges()?;
    let verbose = opts.verbose;
    // Start-up work that does not depend on what follows runs on other
    // cores meanwhile: reading function addresses (slow for the kernel to
    // produce), and creating the maps once the selection is known.
    let addresses = match opts.backend {
        BackendChoice::Tracepoint => None,
        BackendChoice::Kprobe => Some(read_addresses(Source::Kallsyms, verbose)),
        _ => Some(read_addresses(Source::Ftrace, verbose)),
    };
    let kernel = KernelBtf::load(&opts.btf_dir, false)?;
    timing::step(verbose, "vmlinux BTF opened");
    let capture = match opts.write {
        Some(_) => discover::capture_offsets(&kernel.vmlinux)?,
        None => Default::default(),
    };
    let place_offsets = match opts.write.is_some() || place.is_some() {
        true => discover::place_offsets(&kernel.vmlinux)?,
        false => Default::default(),
    };
    let layout = select::Layout {
        offsets: discover::offsets(&kernel.vmlinux)?,
        capture,
        place: place_offsets,
    };
    let cast = discover::rdonly_cast_ids(&kernel.vmlinux);
    let config = select::config(opts, layout, place, cast);
    let filter = match filter.filter(|_| !opts.list) {
        Some(filter) => filter_function(filter, &kernel, cast, verbose)?,
        None => Vec::new(),
    };
    let (listing, pages, wakeup) = (opts.list, opts.perf_page_count, opts.perf_wakeup_events);
    let mut programs = Background::start(move || {
        let maps = Maps::create(&config, filter)?;
        timing::step(verbose, "eBPF maps created");
        let rings = match listing {
            true => Vec::new(),
            false => stream::open_rings(&maps, pages, wakeup)?,
        };
        Ok((maps, rings))
    });

    let mut fentry_probe = || {
        let (maps, _) = programs.get().map_err(|e| format!("{e}"))?;
        choose::fentry_works(maps, &kernel.vmlinux)
    };
    let (choice, why) = choose::choose(
        opts.backend,
        opts.tracer,
        &mut fentry_probe,
        &mut choose::kprobe_multi_works,
    )?;
    let backend = choose::build(choice, opts.tracer)?;
    timing::step(verbose, "backend chosen");
    if opts.backend == BackendChoice::Auto {
        eprintln!("Using the {} backend: {why}", backend.name());
    }

    let reasons = discover::drop_reasons(&kernel.vmlinux);
    let wanted = backend.addresses();
    let listing = move || match addresses.map(Background::take).transpose()? {
        // `-b auto` chose kprobes, which reach functions ftrace does not list.
        Some(read) if read.source == wanted || wanted == Source::Ftrace => Ok(read),
        _ => Listing::read(wanted),
    };
    let found = discover::targets(
        kernel,
        backend.target_kind(),
        &|t| backend.check(t),
        listing,
        &opts.btf_dir,
        verbose,
    )?;
    if verbose && found.unusable > 0 {
        eprintln!(
            "{} with an skb parameter cannot be traced by the {} backend: skipped",
            found.unusable,
            backend.name()
        );
    }
    let filter = Filter {
        name: opts.regex.as_ref(),
        module: opts.module_regex.as_ref(),
    };
    let (targets, filtered): (Vec<Target>, Vec<Target>) =
        found.targets.into_iter().partition(|t| filter.allows(t));
    timing::step(verbose, &format!("{} targets found", targets.len()));
    if opts.list {
        return list(&targets, opts.output == Output::Json).map(|()| ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!(
            "no {} matches the given -r/--module-regex (see ipft -l)",
            what(backend.target_kind())
        );
    }
    // Each probe is a file descriptor: more than a shell's usual 1024.
    if let Err(err) = rlimit::raise_open_files() {
        eprintln!(
            "ipft: cannot raise the open-file limit ({err}): some functions may fail to attach"
        );
    }
    let (maps, rings) = programs.take()?;
    let prepared = session::Prepared {
        backend,
        maps,
        rings,
        targets,
        filtered: filtered.len(),
        reasons,
    };
    session::trace(opts, prepared, signals).await
}

/// Reads function addresses from `source` in the background.
fn read_addresses(source: Source, verbose: bool) -> Background<Listing> {
    Background::start(move || {
        let read = Listing::read(source);
        timing::step(verbose, "function addresses read");
        read
    })
}

/// The `-f` filter translated for this kernel, and loaded once on its own
/// so that one the verifier refuses stops ipft before anything is attached.
fn filter_function(
    filter: &select::Filter,
    kernel: &KernelBtf,
    cast: Option<discover::RdonlyCastIds>,
    verbose: bool,
) -> Result<Vec<Insn>> {
    let mut skb = select::SkbFields::find(discover::skb_field_offsets(&kernel.vmlinux)?)?;
    skb.cast = cast.map(|ids| select::Cast {
        func: ids.func,
        skb: ids.skb,
        bytes: ids.bytes,
        bytes_len: ids.bytes_len,
    });
    let insns = filter.translate(&skb)?;
    attach::filter::check(&insns)?;
    timing::step(
        verbose,
        &format!("filter: {} eBPF instructions", insns.len()),
    );
    Ok(insns)
}

/// Checks that need more than one option or the file system; usage errors
/// exit 2 like clap's own.
fn validate(opts: &Options) -> Option<ExitCode> {
    let usage = |msg: String| {
        Options::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    };
    if let Some(why) = select::refusal(opts) {
        usage(why);
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
    let (code, msg) = session::check_command(opts.command.first()?).err()?;
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

fn what(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Function => "function",
        TargetKind::Tracepoint => "tracepoint",
    }
}

fn list(targets: &[Target], json: bool) -> Result<()> {
    if !json {
        eprintln!("{}", report::list::header());
    }
    let mut out = io::stdout().lock();
    ignore_broken_pipe(report::list::write(&mut out, targets, json).and_then(|()| out.flush()))
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
    bail!("root is needed (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load BPF programs: run ipft with sudo")
}
