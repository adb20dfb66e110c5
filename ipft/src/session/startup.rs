//! Start-up work that joins stages: the privilege check, the `-f` function
//! checked by the kernel, the maps and perf rings made in the background
//! while BTF is scanned, and the open-file limit raised before attaching.
use anyhow::{bail, Context, Result};
use ipft_common::Config;
use ipft_filter::insn::Insn;

use crate::{
    attach::{self, programs::Maps},
    cli::Options,
    discover::KernelLayout,
    par::Background,
    select,
    sys::{perf::PerfRing, rlimit},
    timing,
    trace::stream,
};

/// Loading BPF programs needs CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN.
pub fn check_privileges() -> Result<()> {
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

/// The `-f` filter translated for this kernel (none with `-l`), and loaded
/// once on its own so that one the verifier refuses stops ipft before
/// anything is attached.
pub fn filter_function(
    filter: Option<&select::Filter>,
    layout: &KernelLayout,
    opts: &Options,
) -> Result<Vec<Insn>> {
    let Some(filter) = filter.filter(|_| !opts.list) else {
        return Ok(Vec::new());
    };
    let insns = filter.function(layout)?;
    attach::filter::check(&insns)?;
    let step = format!("filter: {} eBPF instructions", insns.len());
    timing::step(opts.verbose, &step);
    Ok(insns)
}

/// The maps (and, unless listing, the perf rings) for `config` and the
/// filter function, created on another core meanwhile.
pub fn programs(
    config: Config,
    filter: Vec<Insn>,
    opts: &Options,
) -> Background<(Maps, Vec<PerfRing>)> {
    let (listing, pages, wakeup) = (opts.list, opts.perf_page_count, opts.perf_wakeup_events);
    let verbose = opts.verbose;
    Background::start(move || {
        let maps = Maps::create(&config, filter)?;
        timing::step(verbose, "eBPF maps created");
        let rings = match listing {
            true => Vec::new(),
            false => stream::open_rings(&maps, pages, wakeup)?,
        };
        Ok((maps, rings))
    })
}

/// Each probe is a file descriptor: more than a shell's usual 1024.
pub fn raise_open_files() {
    if let Err(err) = rlimit::raise_open_files() {
        eprintln!(
            "ipft: cannot raise the open-file limit ({err}): some functions may fail to attach"
        );
    }
}
