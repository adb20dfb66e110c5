//! `--track`: the kernel side keeps matched skbs in the `TRACKED` map; here
//! userspace tells it which functions free an skb (so it stops following
//! it) and reads how often the map was full.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, PerCpuArray},
    Ebpf,
};

use crate::group::Role;

/// Puts the identity of every freeing target in the `FREES` map.
pub fn mark_frees(ebpf: &mut Ebpf, index: &HashMap<u64, u32>, roles: &[Role]) -> Result<()> {
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
pub fn full_count(ebpf: &Ebpf) -> u64 {
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
