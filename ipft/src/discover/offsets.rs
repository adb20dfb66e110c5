//! Where the fields the programs read (mark, len, head, network header,
//! dev name, GSO fields) sit in this kernel's structs, from BTF: the eBPF
//! crate has no CO-RE, so these offsets are passed to it at load.
use anyhow::{Context, Result};
use btf_rs::{Btf, BtfType, Type};
use ipft_common::Offsets;

use super::btf::MAX_DEPTH;
use crate::select::RdonlyCastIds;

/// Where the fields the programs read live in this kernel's structs.
pub fn offsets(btf: &Btf) -> Result<Offsets> {
    // Each struct is looked up by name once: a lookup scans the types.
    let skb = find_struct(btf, "sk_buff")?;
    let skb = |field| field_offset(btf, &skb, field);
    let (skb_mark, skb_len, skb_data_len) = (skb("mark")?, skb("len")?, skb("data_len")?);
    let (skb_protocol, skb_head) = (skb("protocol")?, skb("head")?);
    let (skb_network_header, skb_end) = (skb("network_header")?, skb("end")?);
    let skb_dev = skb("dev")?;
    let dev_name = field_offset(btf, &find_struct(btf, "net_device")?, "name")?;
    let shinfo = find_struct(btf, "skb_shared_info")?;
    let shinfo = |field| field_offset(btf, &shinfo, field);
    Ok(Offsets {
        skb_mark,
        skb_len,
        skb_data_len,
        skb_protocol,
        skb_head,
        skb_network_header,
        skb_end,
        skb_dev,
        dev_name,
        shinfo_gso_size: shinfo("gso_size")?,
        shinfo_gso_segs: shinfo("gso_segs")?,
        shinfo_gso_type: shinfo("gso_type")?,
    })
}

/// The vmlinux BTF ids a `bpf_rdonly_cast` read of the skb needs: the FUNC
/// `bpf_rdonly_cast` (the kfunc call's immediate) and the STRUCT `sk_buff`
/// (its argument). `None` when the kernel lacks the kfunc (before 6.2): the
/// programs then read the mark with `bpf_probe_read_kernel`.
pub fn rdonly_cast_ids(btf: &Btf) -> Option<RdonlyCastIds> {
    let first = |name, want: fn(&Type) -> bool| {
        btf.resolve_ids_by_name(name)
            .ok()?
            .into_iter()
            .find(|&id| btf.resolve_type_by_id(id).is_ok_and(|t| want(&t)))
    };
    Some(RdonlyCastIds {
        func: first("bpf_rdonly_cast", |t| matches!(t, Type::Func(_)))?,
        skb: first(
            "sk_buff",
            |t| matches!(t, Type::Struct(s) if !s.members.is_empty()),
        )?,
    })
}

/// The (non-empty) struct called `name`, with that name.
fn find_struct(btf: &Btf, name: &'static str) -> Result<(btf_rs::Struct, &'static str)> {
    btf.resolve_types_by_name(name)
        .ok()
        .and_then(|types| {
            types.into_iter().find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
        })
        .map(|s| (s, name))
        .with_context(|| format!("the kernel's BTF has no struct {name}"))
}

/// Byte offset of `field` in a struct, looking into anonymous members.
fn field_offset(btf: &Btf, (found, name): &(btf_rs::Struct, &str), field: &str) -> Result<u32> {
    member_bit_offset(btf, found, field, 0)
        .map(|bits| bits / 8)
        .with_context(|| format!("the kernel's BTF has no {name}.{field}"))
}

/// Finds a member by name, descending into anonymous structs and unions.
fn member_bit_offset(btf: &Btf, s: &btf_rs::Struct, name: &str, depth: usize) -> Option<u32> {
    if depth > MAX_DEPTH {
        return None;
    }
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Some(member.bit_offset());
        }
        if member_name.is_empty() {
            let inner = member
                .get_type_id()
                .and_then(|id| btf.resolve_type_by_id(id).ok());
            if let Some(Type::Struct(inner) | Type::Union(inner)) = inner {
                if let Some(off) = member_bit_offset(btf, &inner, name, depth + 1) {
                    return member.bit_offset().checked_add(off);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::btf::tests::running_kernel;

    #[test]
    fn running_kernel_offsets_are_inside_their_structs() {
        let kernel = running_kernel();
        let o = offsets(&kernel.vmlinux).unwrap();
        for (name, off, align) in [
            ("mark", o.skb_mark, 4),
            ("len", o.skb_len, 4),
            ("head", o.skb_head, 8),
            ("dev", o.skb_dev, 8),
        ] {
            assert!(off < 256 && off % align == 0, "sk_buff.{name} at {off}");
        }
        assert_ne!(o.skb_mark, o.skb_len);
        assert!(o.dev_name < 4096);
    }

    /// The host kernel (6.18) has the kfunc; the ids name what they claim.
    #[test]
    fn running_kernel_has_rdonly_cast() {
        let kernel = running_kernel();
        let ids = rdonly_cast_ids(&kernel.vmlinux).expect("bpf_rdonly_cast in vmlinux BTF");
        let btf = &kernel.vmlinux;
        match btf.resolve_type_by_id(ids.func).unwrap() {
            Type::Func(f) => assert_eq!(btf.resolve_name(&f).unwrap(), "bpf_rdonly_cast"),
            other => panic!("FUNC expected, got {}", other.name()),
        }
        match btf.resolve_type_by_id(ids.skb).unwrap() {
            Type::Struct(s) => assert_eq!(btf.resolve_name(&s).unwrap(), "sk_buff"),
            other => panic!("STRUCT expected, got {}", other.name()),
        }
    }
}
