//! vmlinux's BTF read straight from its bytes (the layout of
//! include/uapi/linux/btf.h), with none of ipft's BTF code: enough to find
//! the skb tracepoints and a function's BTF id. Reading the binary instead
//! of `bpftool btf dump`'s 12 MB of text keeps this quick in the VM
//! suite's emulated guests.
use std::{fs, ops::Range};

const MAGIC: u16 = 0xeb9f;

pub const KIND_PTR: u8 = 2;
pub const KIND_STRUCT: u8 = 4;
pub const KIND_TYPEDEF: u8 = 8;
pub const KIND_FUNC: u8 = 12;
pub const KIND_FUNC_PROTO: u8 = 13;
/// Kinds that only qualify the type they point to.
const MODIFIERS: [u8; 5] = [8, 9, 10, 11, 18]; // typedef volatile const restrict type_tag

/// One type: its kind, name, the type it refers to (`size_or_type`), and
/// for a FUNC_PROTO its parameters' types.
#[derive(Clone, Debug, Default)]
pub struct Type {
    pub kind: u8,
    name: Range<usize>,
    pub type_id: u32,
    params: Range<usize>,
}

/// The parsed BTF: types by id (id 0 is `void`).
pub struct Btf {
    strings: Vec<u8>,
    types: Vec<Type>,
    params: Vec<u32>,
}

impl Btf {
    pub fn read(path: &str) -> Btf {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        Btf::parse(&bytes).unwrap_or_else(|| panic!("{path} is not valid BTF"))
    }

    fn parse(bytes: &[u8]) -> Option<Btf> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        if bytes.get(..2)? != MAGIC.to_le_bytes() {
            return None;
        }
        let header = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let strings = bytes.get(header + str_off..header + str_off + str_len)?;
        let mut btf = Btf {
            strings: strings.to_vec(),
            types: vec![Type::default()],
            params: Vec::new(),
        };
        let (mut at, end) = (header + type_off, header + type_off + type_len);
        while at < end {
            at = btf.parse_type(bytes, at)?;
        }
        Some(btf)
    }

    /// Reads the type at `at`; returns where the next one starts.
    fn parse_type(&mut self, bytes: &[u8], at: usize) -> Option<usize> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let (kind, vlen) = ((info >> 24) as u8 & 0x1f, (info & 0xffff) as usize);
        let first_param = self.params.len();
        if kind == KIND_FUNC_PROTO {
            for i in 0..vlen {
                self.params.push(u32_at(at + 12 + 8 * i + 4)?);
            }
        }
        let name_end = self.strings.get(name_off..)?.iter().position(|&b| b == 0)?;
        self.types.push(Type {
            kind,
            name: name_off..name_off + name_end,
            type_id: u32_at(at + 8)?,
            params: first_param..self.params.len(),
        });
        Some(at + 12 + trailing_len(kind, vlen)?)
    }

    pub fn name(&self, t: &Type) -> &str {
        std::str::from_utf8(&self.strings[t.name.clone()]).unwrap_or_default()
    }

    pub fn get(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// (id, type) of every type.
    pub fn types(&self) -> impl Iterator<Item = (u32, &Type)> {
        (0u32..).zip(&self.types)
    }

    pub fn params(&self, t: &Type) -> &[u32] {
        &self.params[t.params.clone()]
    }

    /// Whether type `id` is a pointer to (a qualified) `struct name`.
    pub fn points_to_struct(&self, id: u32, name: &str) -> bool {
        let Some(pointer) = self.get(id).filter(|t| t.kind == KIND_PTR) else {
            return false;
        };
        let mut target = self.get(pointer.type_id);
        while let Some(t) = target.filter(|t| MODIFIERS.contains(&t.kind)) {
            target = self.get(t.type_id);
        }
        target.is_some_and(|t| t.kind == KIND_STRUCT && self.name(t) == name)
    }
}

/// Bytes after a type's 12-byte header, by kind and `vlen`.
fn trailing_len(kind: u8, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // int, var, decl_tag
        3 => 12,                      // array
        4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
        6 | 13 => 8 * vlen,           // enum, func_proto
        2 | 7..=12 | 16 | 18 => 0,    // ptr, fwd, modifiers, func, float, type_tag
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob of `types` (each its 12-byte header and trailing data)
    /// and `strings`.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_len = types.len() as u32 * 4;
        let header = [24, 0, type_len, type_len, strings.len() as u32];
        let mut out = MAGIC.to_le_bytes().to_vec();
        out.extend([1, 0]);
        header.iter().for_each(|w| out.extend(w.to_le_bytes()));
        types.iter().for_each(|w| out.extend(w.to_le_bytes()));
        out.extend(strings);
        out
    }

    #[test]
    fn finds_a_pointer_to_a_struct_through_const() {
        // 1: struct sk_buff (no members); 2: const 1; 3: ptr 2;
        // 4: func_proto(int a: 3); 5: typedef btf_trace_x → 4.
        let strings = b"\0sk_buff\0btf_trace_x\0a\0";
        let types = [
            1,
            4 << 24,
            232, //
            0,
            10 << 24,
            1, //
            0,
            2 << 24,
            2, //
            0,
            13 << 24 | 1,
            0,
            21,
            3, //
            9,
            8 << 24,
            4,
        ];
        let btf = Btf::parse(&blob(&types, strings)).unwrap();
        let typedef = btf.get(5).unwrap();
        assert_eq!(
            (typedef.kind, btf.name(typedef)),
            (KIND_TYPEDEF, "btf_trace_x")
        );
        let proto = btf.get(typedef.type_id).unwrap();
        assert_eq!(btf.params(proto), [3]);
        assert!(btf.points_to_struct(3, "sk_buff"));
        assert!(!btf.points_to_struct(1, "sk_buff"));
    }

    #[test]
    fn rejects_other_bytes() {
        assert!(Btf::parse(b"not btf at all, not at all").is_none());
    }
}
