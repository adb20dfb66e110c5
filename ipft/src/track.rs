//! `--track`: the kernel side keeps matched skbs in the `TRACKED` map; here
//! userspace tells it which functions free an skb (so it stops following
//! it), hooks the returns of the functions that clone or copy one (so the
//! copy is followed too), and reads how often the map was full.
//!
//! Clones are followed with kprobes (a kretprobe; the entry is recorded by
//! the kprobe programs) or with ftrace (fexit). Tracepoints have no return
//! hook: with the tracepoint backend clones are followed only while they
//! keep the mark, which a clone copies.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, PerCpuArray};

use crate::{
    backend::{ftrace, kprobe, object::Loaded, Link},
    cli::BackendChoice,
    discover::Target,
    group::Role,
};

/// Functions that return a clone or copy of the skb in their first argument.
pub const CLONING: &[&str] = &[
    "skb_clone",
    "skb_copy",
    "__pskb_copy_fclone",
    "skb_copy_expand",
];

/// Hooks the returns of the attached cloning functions. Returns the links
/// and how many could not be hooked.
pub fn follow_clones(
    ebpf: &mut Loaded,
    backend: BackendChoice,
    targets: &[Target],
    index: &HashMap<u64, u32>,
) -> Result<(Vec<Link>, usize)> {
    let cloning: Vec<(u32, &Target)> = (0u32..)
        .zip(targets)
        .filter(|(_, t)| t.module == "vmlinux" && CLONING.contains(&t.name.as_str()))
        .collect();
    let mut links: Vec<Link> = Vec::new();
    let mut failed = 0;
    match backend {
        BackendChoice::Ftrace => {
            let cloning: Vec<Target> = cloning.iter().map(|(_, t)| (*t).clone()).collect();
            (links, failed) = ftrace::attach_fexit(ebpf, "fexit_clone", &cloning)?;
        }
        BackendChoice::Kprobe | BackendChoice::KprobeMulti => {
            let ids: Vec<u64> = index
                .iter()
                .filter(|(_, &t)| cloning.iter().any(|(i, _)| *i == t))
                .map(|(&id, _)| id)
                .collect();
            let map = ebpf
                .map_mut("CLONERS")
                .context("the eBPF object has no CLONERS map")?;
            let mut cloners: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(map)?;
            for id in ids {
                cloners
                    .insert(id, 1, 0)
                    .context("cannot fill the CLONERS map")?;
            }
            let cloning: Vec<Target> = cloning.iter().map(|(_, t)| (*t).clone()).collect();
            (links, failed) = kprobe::attach_returns(ebpf, "kretprobe_clone", &cloning)?;
        }
        _ => {}
    }
    Ok((links, failed))
}

/// Puts the identity of every freeing target in the `FREES` map.
pub fn mark_frees(ebpf: &mut Loaded, index: &HashMap<u64, u32>, roles: &[Role]) -> Result<()> {
    let map = ebpf
        .map_mut("FREES")
        .context("the eBPF object has no FREES map")?;
    let mut frees: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(map)?;
    for (&id, &target) in index {
        if roles.get(target as usize) == Some(&Role::Frees) {
            frees
                .insert(id, 1, 0)
                .context("cannot fill the FREES map")?;
        }
    }
    Ok(())
}

/// How many skbs could not be tracked because the map was full.
pub fn full_count(ebpf: &Loaded) -> u64 {
    let Some(map) = ebpf.map("TRACK_FULL") else {
        return 0;
    };
    let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else {
        return 0;
    };
    array
        .get(&0, 0)
        .map(|per_cpu| per_cpu.iter().sum())
        .unwrap_or(0)
}
