//! Where the fields the programs read (mark, len, head, network header,
//! dev name, GSO fields; for `-w` the MAC header, data, tail, ifindex and
//! network namespace; for `--netns` and `--dev` the device's and the
//! socket's namespace) sit in this kernel's structs, from BTF: the eBPF
//! crate has no CO-RE, so these offsets are passed to it at load. And every
//! `struct sk_buff` field's, for the `-f` filter's code ([`skb_members`]).
use anyhow::{Context, Result};
use btf_rs::{Btf, BtfType, Member, Type};
use ipft_common::{CaptureOffsets, Offsets, PlaceOffsets};
use ipft_filter::Cast;

use super::{
    btf::{Vmlinux, MAX_DEPTH},
    layout::SkbOffsets,
    params::strip_modifiers,
};

/// Where the fields the programs read live in this kernel's structs.
pub fn offsets(btf: &Vmlinux) -> Result<Offsets> {
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

/// `-w`: where the frame's bytes are. Looked up only with `-w`: each
/// struct lookup scans the types.
pub fn capture_offsets(btf: &Vmlinux) -> Result<CaptureOffsets> {
    let skb = find_struct(btf, "sk_buff")?;
    let skb = |field| field_offset(btf, &skb, field);
    Ok(CaptureOffsets {
        skb_mac_header: skb("mac_header")?,
        skb_data: skb("data")?,
        skb_tail: skb("tail")?,
    })
}

/// `-w`, `--netns`, `--dev`: where a packet's device, socket and their
/// namespace are. Looked up only with one of those options.
pub fn place_offsets(btf: &Vmlinux) -> Result<PlaceOffsets> {
    let dev = find_struct(btf, "net_device")?;
    let sock = find_struct(btf, "sock")?;
    Ok(PlaceOffsets {
        dev_ifindex: field_offset(btf, &dev, "ifindex")?,
        dev_net: member_path(btf, &dev, &["nd_net", "net"])?,
        net_inum: member_path(btf, &find_struct(btf, "net")?, &["ns", "inum"])?,
        skb_sk: field_offset(btf, &find_struct(btf, "sk_buff")?, "sk")?,
        sk_net: member_path(btf, &sock, &["__sk_common", "skc_net", "net"])?,
    })
}

/// Byte offset of a member of a member (`net_device.nd_net.net`): each
/// name after the first is looked up in the struct type of the one before,
/// through typedefs (`possible_net_t`).
fn member_path(btf: &Btf, (found, name): &(btf_rs::Struct, &str), path: &[&str]) -> Result<u32> {
    let missing = || format!("the kernel's BTF has no {name}.{}", path.join("."));
    let mut s = found.clone();
    let mut bits = 0u32;
    for (i, field) in path.iter().enumerate() {
        let (offset, member) = find_member(btf, &s, field, 0).with_context(missing)?;
        bits = bits.checked_add(offset).with_context(missing)?;
        if i + 1 < path.len() {
            s = match strip_modifiers(btf, member.get_type_id()) {
                Some(Type::Struct(inner) | Type::Union(inner)) => inner,
                _ => return Err(anyhow::anyhow!(missing())),
            };
        }
    }
    Ok(bits / 8)
}

/// Every `struct sk_buff` field's offset by name, for the `-f` filter's
/// code: the struct is looked up once, here, and only with `-f` (a second
/// scan of the types).
pub fn skb_members(btf: &Vmlinux) -> Result<SkbOffsets> {
    let (skb, _) = find_struct(btf, "sk_buff")?;
    let mut fields = Vec::new();
    flatten(btf, &skb, 0, 0, &mut fields);
    Ok(SkbOffsets(fields))
}

/// Appends each named member of `s` with its byte offset, in order, and
/// those of its anonymous structs and unions where they sit: the first of a
/// name is the one [`find_member`] finds.
fn flatten(btf: &Btf, s: &btf_rs::Struct, base: u32, depth: usize, out: &mut Vec<(String, u32)>) {
    if depth > MAX_DEPTH {
        return;
    }
    for member in &s.members {
        let Some(bits) = base.checked_add(member.bit_offset()) else {
            continue;
        };
        let name = btf.resolve_name(member).unwrap_or_default();
        if !name.is_empty() {
            out.push((name, bits / 8));
            continue;
        }
        let inner = member
            .get_type_id()
            .and_then(|id| btf.resolve_type_by_id(id).ok());
        if let Some(Type::Struct(inner) | Type::Union(inner)) = inner {
            flatten(btf, &inner, bits, depth + 1, out);
        }
    }
}

/// The vmlinux BTF ids a `bpf_rdonly_cast` read of the skb needs: the FUNC
/// `bpf_rdonly_cast` (the kfunc call's immediate) and the STRUCT `sk_buff`
/// (its argument). `None` when the kernel lacks the kfunc (before 6.2): the
/// programs then read the mark with `bpf_probe_read_kernel`. `bytes` is
/// the struct of `ipft_filter::BYTE_ARRAYS` with the longest array this
/// kernel has.
pub fn rdonly_cast_ids(btf: &Vmlinux) -> Option<Cast> {
    let first = |name, want: fn(&Type) -> bool| {
        btf.ids(name)
            .into_iter()
            .find(|&id| btf.resolve_type_by_id(id).is_ok_and(|t| want(&t)))
    };
    let longest = ipft_filter::BYTE_ARRAYS
        .iter()
        .flat_map(|name| btf.ids(name))
        .filter_map(|id| Some((byte_array_len(btf, id)?, id)))
        .max();
    Some(Cast {
        func: first("bpf_rdonly_cast", |t| matches!(t, Type::Func(_)))?,
        skb: first(
            "sk_buff",
            |t| matches!(t, Type::Struct(s) if !s.members.is_empty()),
        )?,
        bytes: longest.map(|(_, id)| id),
        bytes_len: longest.map_or(0, |(len, _)| len),
    })
}

/// The length of the array of one-byte integers that type `id` begins
/// with, at offset 0, when it is a struct that does and the array has at
/// least 4.
fn byte_array_len(btf: &Btf, id: u32) -> Option<u32> {
    let Ok(Type::Struct(s)) = btf.resolve_type_by_id(id) else {
        return None;
    };
    let first = s.members.first().filter(|m| m.bit_offset() == 0)?;
    let Some(Type::Array(array)) = strip_modifiers(btf, first.get_type_id()) else {
        return None;
    };
    let element = strip_modifiers(btf, array.get_type_id());
    let bytes = matches!(element, Some(Type::Int(i)) if i.size() == 1);
    let len = u32::try_from(array.len()).ok()?;
    (bytes && len >= 4).then_some(len)
}

/// The (non-empty) struct called `name`, with that name.
fn find_struct(btf: &Vmlinux, name: &'static str) -> Result<(btf_rs::Struct, &'static str)> {
    btf.types(name)
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
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
    find_member(btf, s, name, depth).map(|(bits, _)| bits)
}

/// A member by name, and its bit offset, descending into anonymous structs
/// and unions.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str, depth: usize) -> Option<(u32, Member)> {
    if depth > MAX_DEPTH {
        return None;
    }
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Some((member.bit_offset(), member.clone()));
        }
        if member_name.is_empty() {
            let inner = member
                .get_type_id()
                .and_then(|id| btf.resolve_type_by_id(id).ok());
            if let Some(Type::Struct(inner) | Type::Union(inner)) = inner {
                if let Some((off, found)) = find_member(btf, &inner, name, depth + 1) {
                    return Some((member.bit_offset().checked_add(off)?, found));
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

    /// The `-w` offsets against facts of sk_buff's layout that have held
    /// since 4.x: `network_header` then `mac_header` (two u16), `tail` then
    /// `end` (two offsets).
    #[test]
    fn capture_offsets_follow_the_kernels_layout() {
        let kernel = running_kernel();
        let o = offsets(&kernel.vmlinux).unwrap();
        let c = capture_offsets(&kernel.vmlinux).unwrap();
        let p = place_offsets(&kernel.vmlinux).unwrap();
        for (name, off, size) in [
            ("mac_header", c.skb_mac_header, 2),
            ("tail", c.skb_tail, 4),
            ("data", c.skb_data, 8),
        ] {
            assert!(off < 256 && off % size == 0, "sk_buff.{name} at {off}");
        }
        assert_eq!(o.skb_network_header + 2, c.skb_mac_header, "{c:?}");
        assert_eq!(c.skb_tail + 4, o.skb_end, "tail and end are neighbours");
        let ifindex = p.dev_ifindex;
        assert!(ifindex < 4096 && ifindex.is_multiple_of(4), "{p:?}");
        assert!(p.dev_net < 4096 && p.dev_net.is_multiple_of(8), "{p:?}");
        assert!(p.net_inum < 1024 && p.net_inum.is_multiple_of(4), "{p:?}");
        assert!(p.skb_sk < 256 && p.skb_sk.is_multiple_of(8), "{p:?}");
        // skc_net follows skc_daddr, skc_rcv_saddr, skc_hash and the ports
        // in sock_common, which starts struct sock.
        assert!(
            p.sk_net >= 16 && p.sk_net < 128 && p.sk_net.is_multiple_of(8),
            "{p:?}"
        );
    }

    #[test]
    fn skb_fields_by_name_agree_with_the_programs_offsets() {
        let kernel = running_kernel();
        let o = offsets(&kernel.vmlinux).unwrap();
        let skb = skb_members(&kernel.vmlinux).unwrap();
        let field = |name| skb.get(name);
        assert_eq!(field("mark").unwrap(), o.skb_mark);
        assert_eq!(field("network_header").unwrap(), o.skb_network_header);
        // data follows head.
        assert_eq!(field("data").unwrap(), o.skb_head + 8);
        let err = field("no_such_field").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kernel's BTF has no sk_buff.no_such_field"
        );
    }

    /// The ids name what they claim; none on a kernel without the kfunc.
    #[test]
    fn rdonly_cast_ids_name_the_kfunc_and_sk_buff() {
        let kernel = running_kernel();
        let btf = &kernel.vmlinux;
        let Some(ids) = rdonly_cast_ids(btf) else {
            let funcs = btf
                .resolve_types_by_name("bpf_rdonly_cast")
                .unwrap_or_default();
            assert!(!funcs.iter().any(|t| matches!(t, Type::Func(_))));
            return;
        };
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
