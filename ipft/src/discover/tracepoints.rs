//! Every BTF tracepoint (`btf_trace_<name>`) that carries an skb.
use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator;

use super::{
    params::{dedup, reason_position, resolve_ptr_target, SkbTypes},
    Candidate, Returns, Target, TargetKind,
};

/// Every BTF tracepoint (`btf_trace_<name>` typedefs) that carries an skb.
/// The typedef's first parameter is the tracepoint's private data, not an
/// argument the program sees, so positions count from the second.
pub fn tracepoints(btf: &Btf) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut skb_types = SkbTypes::default();
    let base = btf.base();
    let (mut types, mut id) = (base.type_iter(), base.type_id_range().0);
    while let Ok(Some(t)) = types.next() {
        let btf_id = id;
        id += 1;
        let Type::Typedef(typedef) = t else { continue };
        let name = btf.resolve_name(&typedef).unwrap_or_default();
        let Some(tp_name) = name.strip_prefix("btf_trace_") else {
            continue;
        };
        let Some(Type::FuncProto(proto)) = resolve_ptr_target(btf, typedef.get_type_id()) else {
            continue;
        };
        let params = proto.parameters.get(1..).unwrap_or_default();
        let Some(pos) = params.iter().position(|p| skb_types.is_skb_ptr(btf, p)) else {
            continue;
        };
        out.push(Candidate {
            target: Target {
                name: tp_name.to_string(),
                module: "vmlinux".to_string(),
                addr: 0,
                address: Default::default(),
                skb_pos: pos as u8,
                nargs: params.len() as u8,
                reason_pos: reason_position(btf, tp_name, params),
                kind: TargetKind::Tracepoint,
                btf_id,
                returns: Returns::Nothing,
            },
            exclusion: None,
        });
    }
    dedup(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::btf::tests::running_kernel;

    #[test]
    fn running_kernel_skb_tracepoints() {
        let kernel = running_kernel();
        let tps = tracepoints(&kernel.vmlinux);
        let find = |name: &str| {
            tps.iter()
                .find(|c| c.target.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        // TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)
        assert_eq!(find("kfree_skb").target.skb_pos, 0);
        // TP_PROTO(struct sock *sk, const struct sk_buff *skb)
        assert_eq!(find("tcp_retransmit_skb").target.skb_pos, 1);
        assert!(tps.len() >= 10, "only {} tracepoints", tps.len());
        assert!(tps.iter().all(|c| c.target.kind == TargetKind::Tracepoint));
    }
}
