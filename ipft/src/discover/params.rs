//! Reading function parameters from BTF: which is the skb, which is a drop
//! reason, and whether the function can be traced at all.
use std::collections::{HashMap, HashSet};

use btf_rs::{Btf, BtfType, Type};

use super::{btf::MAX_DEPTH, Candidate};

/// Where an `enum skb_drop_reason` parameter is, in a function that drops
/// (kfree_skb_reason, sk_skb_reason_drop, the kfree_skb tracepoint, …).
/// Helpers that pass a reason along (skb_release_data) often get a
/// placeholder (NOT_SPECIFIED) even for a consumed packet: not shown.
pub(super) fn reason_position(btf: &Btf, name: &str, params: &[btf_rs::Parameter]) -> Option<u8> {
    if !(name.contains("kfree_skb") || name.contains("drop")) {
        return None;
    }
    params
        .iter()
        .position(|p| {
            matches!(strip_modifiers(btf, p.get_type_id()),
            Some(Type::Enum(e)) if btf.resolve_name(&e).is_ok_and(|n| n == "skb_drop_reason"))
        })
        .map(|pos| pos as u8)
}

pub(super) fn resolve_ptr_target(btf: &Btf, id: Option<u32>) -> Option<Type> {
    match btf.resolve_type_by_id(id?).ok()? {
        Type::Ptr(ptr) => btf.resolve_type_by_id(ptr.get_type_id()?).ok(),
        _ => None,
    }
}

/// Resolves a type id through typedefs and qualifiers.
pub(super) fn strip_modifiers(btf: &Btf, mut id: Option<u32>) -> Option<Type> {
    for _ in 0..MAX_DEPTH {
        let t = btf.resolve_type_by_id(id?).ok()?;
        match &t {
            Type::Typedef(_)
            | Type::Const(_)
            | Type::Volatile(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => {
                id = t.as_btf_type()?.get_type_id();
            }
            _ => return Some(t),
        }
    }
    None
}

/// Remembers which type ids are `struct sk_buff *` (possibly const, typedef'd).
#[derive(Default)]
pub(super) struct SkbTypes(HashMap<u32, bool>);

impl SkbTypes {
    pub(super) fn is_skb_ptr(&mut self, btf: &Btf, param: &btf_rs::Parameter) -> bool {
        let Some(id) = param.get_type_id() else {
            return false;
        };
        *self.0.entry(id).or_insert_with(|| is_skb_ptr(btf, id))
    }
}

fn is_skb_ptr(btf: &Btf, id: u32) -> bool {
    let Some(Type::Ptr(ptr)) = strip_modifiers(btf, Some(id)) else {
        return false;
    };
    match strip_modifiers(btf, ptr.get_type_id()) {
        Some(Type::Struct(s)) => btf.resolve_name(&s).is_ok_and(|n| n == "sk_buff"),
        _ => false,
    }
}

/// BTF can describe one name twice; keep the first per module.
pub(super) fn dedup(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut out: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| seen.insert((c.target.module.clone(), c.target.name.clone())))
        .collect();
    out.sort_by(|a, b| {
        let key = |c: &Candidate| {
            (
                c.target.module != "vmlinux",
                c.target.module.clone(),
                c.target.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::discover::{functions, offsets, raw::Section, tracepoints, KernelBtf, Vmlinux};
    use btf_rs::Btf;

    /// A BTF blob written by hand, for shapes no kernel has.
    struct BtfBlob {
        types: Vec<u32>,
        strings: Vec<u8>,
    }

    const INT: u32 = 1;
    const PTR: u32 = 2;
    const STRUCT: u32 = 4;
    const TYPEDEF: u32 = 8;
    const FUNC: u32 = 12;
    const FUNC_PROTO: u32 = 13;

    impl BtfBlob {
        fn new() -> Self {
            BtfBlob {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        /// Appends a type (ids count from 1) with its trailing words.
        fn add(&mut self, kind: u32, name: &str, vlen: u32, size_or_type: u32, extra: &[u32]) {
            let name_off = match name {
                "" => 0,
                _ => {
                    let off = self.strings.len() as u32;
                    self.strings.extend(name.as_bytes());
                    self.strings.push(0);
                    off
                }
            };
            self.types
                .extend([name_off, kind << 24 | vlen, size_or_type]);
            self.types.extend(extra);
        }

        fn parse(&self) -> KernelBtf {
            let types: Vec<u8> = self.types.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut out = vec![0x9f, 0xeb, 1, 0];
            let (type_len, str_len) = (types.len() as u32, self.strings.len() as u32);
            for word in [24, 0, type_len, type_len, str_len] {
                out.extend(u32::to_le_bytes(word));
            }
            out.extend(types);
            out.extend(&self.strings);
            KernelBtf {
                vmlinux: Vmlinux::new(
                    Btf::from_bytes(&out).expect("a well-formed blob"),
                    Section::vmlinux(out).expect("a well-formed blob"),
                ),
                modules: Vec::new(),
            }
        }
    }

    /// Types that name themselves (a corrupt BTF can say anything) end the
    /// walk instead of looping or overflowing the stack.
    #[test]
    fn self_referencing_types_end_the_walk() {
        let mut blob = BtfBlob::new();
        blob.add(TYPEDEF, "loop", 0, 1, &[]); // 1: typedef of itself
        blob.add(PTR, "", 0, 1, &[]); // 2: pointer to it
        blob.add(FUNC_PROTO, "", 1, 0, &[0, 2]); // 3: (loop *)
        blob.add(FUNC, "f", 0, 3, &[]); // 4
        blob.add(TYPEDEF, "btf_trace_t", 0, 6, &[]); // 5
        blob.add(PTR, "", 0, 7, &[]); // 6
        blob.add(FUNC_PROTO, "", 2, 0, &[0, 2, 0, 1]); // 7
        blob.add(STRUCT, "sk_buff", 1, 8, &[0, 8, 0]); // 8: contains itself
        blob.add(INT, "int", 0, 4, &[32]); // 9
        let kernel = blob.parse();
        assert!(functions(&kernel).is_empty());
        assert!(tracepoints(&kernel.vmlinux).is_empty());
        let err = offsets(&kernel.vmlinux).unwrap_err();
        assert_eq!(err.to_string(), "the kernel's BTF has no sk_buff.mark");
    }
}
