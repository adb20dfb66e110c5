//! What each target means for a packet's life: where the skb is freed (so
//! the same pointer later names a new packet), and where it is only being
//! released. Decided once per run from the targets' names.
use super::{Target, TargetKind};

/// What a target means for a packet's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Normal,
    /// The skb is freed here: the next unrelated call on the same pointer is
    /// a new packet.
    Frees,
    /// Part of freeing (releasing data, destructors): still the same packet.
    Releasing,
}

/// Functions that free an skb when kfree_skbmem (the true last step) is not
/// traced, e.g. because `-r` left it out.
const FREEING: &[&str] = &[
    "kfree_skb",
    "kfree_skb_reason",
    "sk_skb_reason_drop",
    "consume_skb",
    "__kfree_skb",
    "kfree_skb_list_reason",
    "napi_consume_skb",
    "__consume_stateless_skb",
    "skb_attempt_defer_free",
    "__napi_kfree_skb",
];

/// Each target's [`Role`], decided once from the names.
pub fn roles(targets: &[Target]) -> Vec<Role> {
    let function = |t: &Target| t.kind == TargetKind::Function;
    let has_kfree_skbmem = targets
        .iter()
        .any(|t| function(t) && t.name == "kfree_skbmem");
    targets
        .iter()
        .map(|t| match t.kind {
            // Tracepoints fire once the last reference is gone: exact.
            TargetKind::Tracepoint if matches!(t.name.as_str(), "kfree_skb" | "consume_skb") => {
                Role::Frees
            }
            TargetKind::Tracepoint => Role::Normal,
            // The skb's memory is freed, or parked in the per-CPU NAPI cache.
            _ if has_kfree_skbmem
                && matches!(t.name.as_str(), "kfree_skbmem" | "napi_skb_cache_put") =>
            {
                Role::Frees
            }
            _ if !has_kfree_skbmem && FREEING.contains(&t.name.as_str()) => Role::Frees,
            _ if is_releasing(&t.name) => Role::Releasing,
            _ => Role::Normal,
        })
        .collect()
}

/// Whether the skb's data is already freed when `target` is called:
/// kfree_skbmem and napi_skb_cache_put run after skb_release_data, so the
/// bytes `-w` would read there are stale.
pub fn data_freed(target: &Target) -> bool {
    target.kind == TargetKind::Function
        && matches!(target.name.as_str(), "kfree_skbmem" | "napi_skb_cache_put")
}

fn is_releasing(name: &str) -> bool {
    [
        "free",
        "release",
        "consume",
        "destructor",
        "orphan",
        "wfree",
        "rfree",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_frees_and_kfree_skbmem() {
        let target = |name: &str, kind| Target {
            kind,
            ..crate::discover::tests::candidate(name, "vmlinux").target
        };
        let tps = [
            target("net_dev_queue", TargetKind::Tracepoint),
            target("consume_skb", TargetKind::Tracepoint),
        ];
        assert_eq!(roles(&tps), [Role::Normal, Role::Frees]);
        let funcs = ["consume_skb", "skb_release_data", "kfree_skbmem"]
            .map(|n| target(n, TargetKind::Function));
        assert_eq!(
            roles(&funcs),
            [Role::Releasing, Role::Releasing, Role::Frees]
        );
        assert_eq!(roles(&funcs[..2]), [Role::Frees, Role::Releasing]);
    }
}
