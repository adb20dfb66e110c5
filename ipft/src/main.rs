//! ipft: which kernel functions did each packet go through?
//!
//! Data flows one way, one module per stage (see ARCHITECTURE.md):
//! [`cli`] options → [`discover`] targets and the kernel's layout →
//! [`select`] which packets → [`attach`] (a backend) → [`trace`] events,
//! per packet → [`report`] table, JSON or list. [`session`] runs one trace through the stages; this
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

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use crate::{
    attach::choose,
    cli::{Options, Output},
    discover::{KernelBtf, KernelLayout, Needs, Wanted},
    report::progress::{paint, RED},
    session::Signals,
};

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Some(kind) = opts.generate {
        return cli::generate(kind);
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

/// The stages in order, with start-up's slow parts overlapped: addresses
/// are read and maps created in the background while BTF is scanned.
async fn run(
    opts: &Options,
    filter: Option<&select::Filter>,
    place: Option<select::Place>,
) -> Result<ExitCode> {
    // First of all: a Ctrl-C during start-up must stop ipft, not be lost.
    timing::start_clock();
    let signals = Signals::new()?;
    session::check_privileges()?;
    let verbose = opts.verbose;
    let addresses =
        choose::addresses_first(opts.backend).map(|s| discover::read_addresses(s, verbose));
    let kernel = KernelBtf::load(&opts.btf_dir, false)?;
    timing::step(verbose, "vmlinux BTF opened");
    let layout = KernelLayout::read(&kernel.vmlinux, Needs::of(opts))?;

    let config = select::config(opts, &layout, place);
    let filter = session::filter_function(filter, &layout, opts)?;
    let mut programs = session::programs(config, filter, opts);

    let backend = choose::pick(
        opts.backend,
        opts.tracer,
        &kernel.vmlinux,
        &mut programs,
        verbose,
    )?;
    let wanted = Wanted {
        kind: backend.target_kind(),
        addresses: backend.addresses(),
        usable: &|t| backend.check(t),
        backend: backend.name(),
    };
    let found = discover::discover(kernel, wanted, addresses, opts)?;
    if opts.list {
        let json = opts.output == Output::Json;
        return report::list::print(&found.targets, json).map(|()| ExitCode::SUCCESS);
    }

    session::raise_open_files();
    let (maps, rings) = programs.take()?;
    let prepared = session::Prepared {
        backend,
        maps,
        rings,
        targets: found.targets,
        filtered: found.filtered,
        reasons: found.reasons,
    };
    session::trace(opts, prepared, signals).await
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
