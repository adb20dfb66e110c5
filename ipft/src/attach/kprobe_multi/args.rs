//! Where `kprobe_skb_any` finds each function's skb and drop reason: the
//! `ARG_SLOTS` array slot of its identity when free, else the `ARGS` hash
//! map, filled before its link makes it run (see the backend's header).
use std::collections::HashSet;

use anyhow::{Context, Result};
use ipft_common::programs as catalog;

use crate::{
    attach::{functions::identities, programs::Maps},
    discover::Target,
};

/// Tells `kprobe_skb_any` where the skb and drop reason of each function
/// of `group` are, before its link makes it run: in the identity's slot
/// of `ARG_SLOTS` when it is free, else in `ARGS`.
pub(super) fn fill_args(maps: &Maps, group: &[&Target]) -> Result<()> {
    let mut taken = HashSet::new();
    for target in group {
        let args = catalog::args(target.skb_pos, target.reason_pos);
        for id in identities(target) {
            let slot = ipft_common::arg_slot(id);
            let result = match taken.insert(slot) {
                true => maps.update(
                    ipft_common::maps::ARG_SLOTS.name,
                    &slot.to_ne_bytes(),
                    &arg_slot(id, args),
                ),
                false => maps.update(
                    ipft_common::maps::ARGS.name,
                    &id.to_ne_bytes(),
                    &args.to_ne_bytes(),
                ),
            };
            result.context("cannot fill the ARG_SLOTS and ARGS maps")?;
        }
    }
    Ok(())
}

/// The bytes of an `ipft_common::ArgSlot`.
fn arg_slot(func: u64, args: u16) -> Vec<u8> {
    let mut bytes = func.to_ne_bytes().to_vec();
    bytes.extend(args.to_ne_bytes());
    bytes.resize(std::mem::size_of::<ipft_common::ArgSlot>(), 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each identity gets its slot, or the hash map when another took it;
    /// the slot's bytes are an `ArgSlot`.
    #[test]
    fn args_go_to_free_slots_then_to_the_hash_map() {
        let bytes = arg_slot(0xffffffff81a00010, 0x0201);
        assert_eq!(bytes.len(), std::mem::size_of::<ipft_common::ArgSlot>());
        assert_eq!(&bytes[..8], &0xffffffff81a00010u64.to_ne_bytes());
        assert_eq!(&bytes[8..10], &0x0201u16.to_ne_bytes());
        // 16 KiB apart: the same slot; 4 bytes apart: the next one.
        let a = ipft_common::arg_slot(0xffffffff81a00010);
        assert_eq!(a, ipft_common::arg_slot(0xffffffff81a04010));
        assert_eq!(a + 1, ipft_common::arg_slot(0xffffffff81a00014));
    }
}
