//! The names of the kernel's `enum skb_drop_reason` values.
use std::collections::HashMap;

use btf_rs::Type;

use super::Vmlinux;

/// Names of `enum skb_drop_reason` values, without the `SKB_DROP_REASON_`
/// prefix (`NETFILTER_DROP`); empty on kernels without drop reasons.
pub fn drop_reasons(btf: &Vmlinux) -> HashMap<u32, String> {
    let types = btf.types("skb_drop_reason");
    let Some(Type::Enum(e)) = types.into_iter().find(|t| matches!(t, Type::Enum(_))) else {
        return HashMap::new();
    };
    e.members
        .iter()
        .filter_map(|m| {
            let name = btf.resolve_name(m).ok()?;
            let short = name
                .strip_prefix("SKB_DROP_REASON_")
                .or_else(|| name.strip_prefix("SKB_"))
                .unwrap_or(&name);
            Some((m.val(), short.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{btf::tests::running_kernel, functions, tracepoints};

    #[test]
    fn running_kernel_drop_reasons_and_their_parameters() {
        let kernel = running_kernel();
        let reasons = drop_reasons(&kernel.vmlinux);
        assert_eq!(reasons.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
        assert!(reasons.values().any(|r| r == "NETFILTER_DROP"));
        let tps = tracepoints(&kernel.vmlinux);
        let kfree = tps.iter().find(|c| c.target.name == "kfree_skb").unwrap();
        assert_eq!(kfree.target.reason_pos, Some(2));
        let funcs = functions(&kernel);
        let drop = funcs
            .iter()
            .find(|c| ["sk_skb_reason_drop", "kfree_skb_reason"].contains(&c.target.name.as_str()))
            .unwrap();
        assert_eq!(drop.target.reason_pos, Some(drop.target.skb_pos + 1));
    }
}
