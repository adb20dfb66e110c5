//! Every function in vmlinux and module BTF that takes a `struct sk_buff *`.
use super::{params::dedup, raw::skb_functions, Candidate, KernelBtf};

/// Every function in vmlinux and module BTF that takes a `struct sk_buff *`.
pub fn functions(kernel: &KernelBtf) -> Vec<Candidate> {
    let mut out = skb_functions(&kernel.vmlinux.raw, None, "vmlinux");
    for (module, split) in &kernel.modules {
        out.extend(skb_functions(&kernel.vmlinux.raw, Some(split), module));
    }
    dedup(out)
}

#[cfg(test)]
mod tests {
    use btf_rs::{Btf, BtfType, Type};
    use fallible_iterator::FallibleIterator;

    use super::*;
    use crate::discover::{
        btf::tests::running_kernel,
        params::{reason_position, strip_modifiers, SkbTypes},
        Exclusion, Returns, Target, TargetKind,
    };

    fn exclusion(btf: &Btf, params: &[btf_rs::Parameter]) -> Option<Exclusion> {
        if params.iter().any(|p| p.is_variadic()) {
            return Some(Exclusion::Variadic);
        }
        let by_value = params.iter().any(|p| {
            matches!(
                strip_modifiers(btf, p.get_type_id()),
                Some(Type::Struct(_) | Type::Union(_))
            )
        });
        by_value.then_some(Exclusion::AggregateByValue)
    }

    /// How a function's return value of type `id` (0: `void`) reads.
    fn returns(btf: &Btf, id: u32) -> Returns {
        if id == 0 {
            return Returns::Nothing;
        }
        let size = |bytes: usize| bytes.min(8) as u8;
        match strip_modifiers(btf, Some(id)) {
            Some(Type::Ptr(_)) => Returns::Pointer,
            Some(Type::Int(int)) if int.is_signed() => Returns::Signed(size(int.size())),
            Some(Type::Int(int)) => Returns::Unsigned(size(int.size())),
            Some(Type::Enum(e)) if e.is_signed() => Returns::Signed(size(e.size())),
            Some(Type::Enum(e)) => Returns::Unsigned(size(e.size())),
            Some(Type::Enum64(e)) if e.is_signed() => Returns::Signed(size(e.size())),
            Some(Type::Enum64(e)) => Returns::Unsigned(size(e.size())),
            _ => Returns::Nothing,
        }
    }

    /// The scan as btf-rs reads BTF (what ipft did before [`skb_functions`]
    /// read the records itself): both must find the same functions, with
    /// the same positions, return types and exclusions.
    fn through_btf_rs(btf: &Btf) -> Vec<Candidate> {
        let mut skb_types = SkbTypes::default();
        let base = btf.base();
        let (mut types, mut id) = (base.type_iter(), base.type_id_range().0);
        let mut out = Vec::new();
        while let Ok(Some(t)) = types.next() {
            let btf_id = id;
            id += 1;
            let Type::Func(func) = t else { continue };
            let Some(Type::FuncProto(proto)) = func
                .get_type_id()
                .and_then(|id| btf.resolve_type_by_id(id).ok())
            else {
                continue;
            };
            let params = &proto.parameters;
            let Some(pos) = params.iter().position(|p| skb_types.is_skb_ptr(btf, p)) else {
                continue;
            };
            let name = btf.resolve_name(&func).unwrap_or_default();
            out.push(Candidate {
                target: Target {
                    reason_pos: reason_position(btf, &name, params),
                    name,
                    module: "vmlinux".into(),
                    addr: 0,
                    address: Default::default(),
                    skb_pos: pos as u8,
                    nargs: params.len() as u8,
                    kind: TargetKind::Function,
                    btf_id,
                    returns: returns(btf, proto.return_type_id()),
                },
                exclusion: exclusion(btf, params),
            });
        }
        dedup(out)
    }

    #[test]
    fn raw_scan_finds_what_btf_rs_finds() {
        let kernel = running_kernel();
        let raw: Vec<Candidate> = functions(&kernel)
            .into_iter()
            .filter(|c| c.target.module == "vmlinux")
            .collect();
        let reference = through_btf_rs(&kernel.vmlinux);
        assert!(reference.len() > 1000);
        assert_eq!(raw.len(), reference.len());
        for (a, b) in raw.iter().zip(&reference) {
            assert_eq!(a, b);
        }
    }

    #[test]
    fn running_kernel_has_many_skb_functions() {
        let kernel = running_kernel();
        let funcs = functions(&kernel);
        assert!(funcs.len() > 1000, "only {} skb functions", funcs.len());
        let find = |name: &str| {
            funcs
                .iter()
                .find(|c| c.target.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        // int ip_rcv(struct sk_buff *skb, struct net_device *dev, ...)
        assert_eq!(find("ip_rcv").target.skb_pos, 0);
        // int ip_finish_output2(struct net *net, struct sock *sk, struct sk_buff *skb)
        assert_eq!(find("ip_finish_output2").target.skb_pos, 2);
        assert_eq!(find("ip_finish_output2").target.nargs, 3);
        // void kfree_skb_reason / sk_skb_reason_drop take the skb first or second
        assert!(funcs
            .iter()
            .all(|c| (c.target.skb_pos as usize) < c.target.nargs as usize));
        assert!(funcs.iter().all(|c| c.target.kind == TargetKind::Function));
        // What function_graph reads of each return register.
        use crate::discover::Returns;
        assert_eq!(find("ip_rcv").target.returns, Returns::Signed(4));
        assert_eq!(find("skb_clone").target.returns, Returns::Pointer);
        assert_eq!(find("consume_skb").target.returns, Returns::Nothing);
        // bool skb_try_coalesce(struct sk_buff *to, struct sk_buff *from, ...)
        assert_eq!(
            find("skb_try_coalesce").target.returns,
            Returns::Unsigned(1)
        );
        // u32 skb_get_poff(const struct sk_buff *skb)
        assert_eq!(find("skb_get_poff").target.returns, Returns::Unsigned(4));
    }

    #[test]
    fn running_kernel_function_btf_ids_name_the_function() {
        let kernel = running_kernel();
        for c in functions(&kernel)
            .iter()
            .filter(|c| c.target.module == "vmlinux")
            .step_by(97)
        {
            let id = c.target.btf_id;
            let Ok(Type::Func(func)) = kernel.vmlinux.resolve_type_by_id(id) else {
                panic!("{}: BTF id {id} is not a function", c.target.name);
            };
            assert_eq!(kernel.vmlinux.resolve_name(&func).unwrap(), c.target.name);
        }
    }
}
