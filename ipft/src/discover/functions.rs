//! Every function in vmlinux and module BTF that takes a `struct sk_buff *`.
use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator;

use super::{
    params::{dedup, exclusion, reason_position, returns, SkbTypes},
    Candidate, KernelBtf, Target, TargetKind,
};

/// Every function in vmlinux and module BTF that takes a `struct sk_buff *`.
pub fn functions(kernel: &KernelBtf) -> Vec<Candidate> {
    let mut out = Vec::new();
    let vmlinux = kernel.vmlinux.base();
    scan_functions(
        &kernel.vmlinux,
        (vmlinux.type_id_range().0, vmlinux.type_iter()),
        "vmlinux",
        &mut out,
    );
    for (module, btf) in &kernel.modules {
        if let Some(split) = btf.split() {
            let types = (split.type_id_range().0, split.type_iter());
            scan_functions(btf, types, module, &mut out);
        }
    }
    dedup(out)
}

/// Scans `types`, whose ids count up from the first, for functions taking an
/// skb.
fn scan_functions(
    btf: &Btf,
    (first_id, types): (
        u32,
        impl FallibleIterator<Item = Type, Error = btf_rs::Error>,
    ),
    module: &str,
    out: &mut Vec<Candidate>,
) {
    let mut skb_types = SkbTypes::default();
    let mut types = types;
    let mut id = first_id;
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
        let Some(pos) = proto
            .parameters
            .iter()
            .position(|p| skb_types.is_skb_ptr(btf, p))
        else {
            continue;
        };
        let name = btf.resolve_name(&func).unwrap_or_default();
        let reason_pos = reason_position(btf, &name, &proto.parameters);
        out.push(Candidate {
            target: Target {
                name,
                module: module.to_string(),
                addr: 0,
                skb_pos: pos as u8,
                nargs: proto.parameters.len() as u8,
                reason_pos,
                kind: TargetKind::Function,
                btf_id,
                returns: returns(btf, proto.return_type_id()),
            },
            exclusion: exclusion(btf, &proto.parameters),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::btf::tests::running_kernel;

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
