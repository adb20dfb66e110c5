//! `--track`: the kernel side keeps matched skbs in the `TRACKED` map; here
//! userspace tells it which functions free an skb (so it stops following
//! it), hooks the returns of the functions that clone or copy one through
//! the backend (so the copy is followed too), and reads how often the map
//! was full.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::PerCpuArray;

use super::{programs::Maps, Backend, Link};
use crate::discover::{roles::Role, Target};

/// Functions that return a clone or copy of the skb in their first argument.
const CLONING: &[&str] = &[
    "skb_clone",
    "skb_copy",
    "__pskb_copy_fclone",
    "skb_copy_expand",
];

/// Hooks the returns of the attached cloning functions. Returns the links
/// and how many could not be hooked.
pub fn follow_clones(
    backend: &dyn Backend,
    maps: &Maps,
    targets: &[Target],
) -> Result<(Vec<Link>, usize)> {
    let cloners: Vec<Target> = targets
        .iter()
        .filter(|t| t.module == "vmlinux" && CLONING.contains(&t.name.as_str()))
        .cloned()
        .collect();
    backend.follow_clones(maps, &cloners)
}

/// Puts the identity of every freeing target in the `FREES` map.
pub fn mark_frees(maps: &Maps, index: &HashMap<u64, u32>, roles: &[Role]) -> Result<()> {
    for (&id, &target) in index {
        if roles.get(target as usize) == Some(&Role::Frees) {
            maps.update(ipft_common::maps::FREES.name, &id.to_ne_bytes(), &[1])
                .context("cannot fill the FREES map")?;
        }
    }
    Ok(())
}

/// How many skbs could not be tracked because the map was full.
pub fn full_count(maps: &Maps) -> u64 {
    let Some(map) = maps.map(ipft_common::maps::TRACK_FULL.name) else {
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
