//! BTF read straight from its bytes, for the one question start-up asks of
//! every function: does it take a `struct sk_buff *`?
//!
//! Why by hand, beside btf-rs: btf-rs's iterator decodes every one of
//! vmlinux's ~150,000 types into owned values (parameter and member
//! vectors, names as strings), and it loads a module's split BTF by copying
//! all its strings into a hash map. Finding the ~2,000 skb functions needs
//! a look at each FUNC's prototype only: here one pass records where each
//! type starts, then each FUNC's parameters are read in place, with the
//! answer for each parameter type remembered. Measured on 6.18 (native):
//! 15 ms with btf-rs, 2 ms here; under emulation that is most of start-up.
//! Everything else (struct offsets, drop reasons, tracepoints) still reads
//! BTF through btf-rs: it looks at a handful of types.
//!
//! The format is the kernel's (Documentation/bpf/btf.rst): a header, then
//! the type records, each a 12-byte `btf_type` and data whose length its
//! kind gives, then the NUL-terminated strings. Only native (little-endian)
//! BTF is read, which is what the running kernel publishes; a record that
//! runs past the end stops the walk, so damaged BTF loses types, never
//! panics.
use super::{btf::MAX_DEPTH, Candidate, Exclusion, Returns, Target, TargetKind};

const INT: u8 = 1;
const PTR: u8 = 2;
const ARRAY: u8 = 3;
const STRUCT: u8 = 4;
const UNION: u8 = 5;
const ENUM: u8 = 6;
const FWD: u8 = 7;
const TYPEDEF: u8 = 8;
const VOLATILE: u8 = 9;
const CONST: u8 = 10;
const RESTRICT: u8 = 11;
const FUNC: u8 = 12;
const FUNC_PROTO: u8 = 13;
const VAR: u8 = 14;
const DATASEC: u8 = 15;
const FLOAT: u8 = 16;
const DECL_TAG: u8 = 17;
const TYPE_TAG: u8 = 18;
const ENUM64: u8 = 19;

/// One BTF section (vmlinux, or a module's split BTF) with where each of
/// its types starts.
pub struct Section {
    bytes: Vec<u8>,
    /// Where the type records and the strings start in `bytes`.
    types_at: usize,
    strings: std::ops::Range<usize>,
    /// The id of the first type here: 1 for vmlinux, after vmlinux's last
    /// for a module.
    first_id: u32,
    /// String offsets below this name vmlinux's strings (split BTF).
    first_str: u32,
    /// Each type's record offset, from `types_at`.
    offsets: Vec<u32>,
    /// The ids of the FUNC records.
    funcs: Vec<u32>,
    /// The ids of the types named by each of `LOOKED_UP` (vmlinux only).
    named: Vec<Vec<u32>>,
}

/// The names start-up looks vmlinux's types up by (the structs whose
/// offsets the programs need, the kfunc and structs of `bpf_rdonly_cast`,
/// the drop reasons' enum, fentry's probe function): found during the one
/// walk instead of one scan of every type each (see [`Section::ids`]).
pub const LOOKED_UP: &[&str] = &[
    "sk_buff",
    "net_device",
    "skb_shared_info",
    "sock",
    "net",
    "bpf_rdonly_cast",
    "bpf_sockopt_buf",
    "irq_stack",
    "ifla_vf_broadcast",
    "edid_info",
    "skb_drop_reason",
    "consume_skb",
];

/// A type record as it lies in the bytes.
#[derive(Clone, Copy)]
struct Record<'a> {
    name_off: u32,
    kind: u8,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, by kind.
    size_or_type: u32,
    data: &'a [u8],
}

impl Section {
    /// Reads vmlinux's BTF from its bytes; `None` when they are not
    /// native BTF.
    pub fn vmlinux(bytes: Vec<u8>) -> Option<Self> {
        Self::parse(bytes, 1, 0)
    }

    /// Reads a module's split BTF, whose ids and strings follow `base`'s.
    pub fn split(bytes: Vec<u8>, base: &Section) -> Option<Self> {
        let first_id = base.first_id + base.offsets.len() as u32;
        let first_str = (base.strings.end - base.strings.start) as u32;
        Self::parse(bytes, first_id, first_str)
    }

    fn parse(bytes: Vec<u8>, first_id: u32, first_str: u32) -> Option<Self> {
        if bytes.get(..4)? != [0x9f, 0xeb, 1, 0] {
            return None;
        }
        let word = |at: usize| Some(u32_at(&bytes, at)? as usize);
        let hdr_len = word(4)?;
        let (type_off, type_len) = (word(8)?, word(12)?);
        let (str_off, str_len) = (word(16)?, word(20)?);
        let types_at = hdr_len.checked_add(type_off)?;
        let types_end = types_at.checked_add(type_len)?.min(bytes.len());
        let str_start = hdr_len.checked_add(str_off)?;
        let strings = str_start..str_start.checked_add(str_len)?.min(bytes.len());
        let mut section = Section {
            bytes: Vec::new(),
            types_at,
            strings,
            first_id,
            first_str,
            offsets: Vec::new(),
            funcs: Vec::new(),
            named: vec![Vec::new(); LOOKED_UP.len()],
        };
        let strings = bytes.get(section.strings.clone()).unwrap_or_default();
        let names = match first_str {
            0 => Names::new(strings),
            _ => Names::new(&[]),
        };
        section.walk(bytes.get(types_at..types_end)?, &names);
        section.bytes = bytes;
        Some(section)
    }

    /// Records where each type starts, which are functions, and which
    /// have a name of `LOOKED_UP`.
    fn walk(&mut self, types: &[u8], names: &Names<'_>) {
        let mut at = 0usize;
        while let Some(record) = record_at(types, at) {
            let id = self.first_id + self.offsets.len() as u32;
            self.offsets.push(at as u32);
            if record.kind == FUNC {
                self.funcs.push(id);
            }
            if let Some(i) = names.which(record.name_off) {
                self.named[i].push(id);
            }
            at += 12 + record.data.len();
        }
    }

    /// The ids of the types called `name`, when it is one of `LOOKED_UP`.
    pub fn ids(&self, name: &str) -> Option<&[u32]> {
        let i = LOOKED_UP.iter().position(|n| *n == name)?;
        Some(&self.named[i])
    }

    fn record(&self, id: u32) -> Option<Record<'_>> {
        let index = id.checked_sub(self.first_id)? as usize;
        let at = *self.offsets.get(index)? as usize;
        record_at(self.bytes.get(self.types_at..)?, at)
    }

    fn string(&self, off: u32) -> Option<&str> {
        let off = off.checked_sub(self.first_str)? as usize;
        let bytes = self.bytes.get(self.strings.clone())?.get(off..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }
}

/// Tells which of `LOOKED_UP`, if any, a name offset names: most names
/// are told apart by their first byte, before any comparison.
struct Names<'a> {
    strings: &'a [u8],
    first: [bool; 256],
}

impl<'a> Names<'a> {
    fn new(strings: &'a [u8]) -> Self {
        let mut first = [false; 256];
        for name in LOOKED_UP.iter().filter(|_| !strings.is_empty()) {
            first[usize::from(name.as_bytes()[0])] = true;
        }
        Names { strings, first }
    }

    fn which(&self, off: u32) -> Option<usize> {
        let at = self.strings.get(off as usize..).filter(|_| off != 0)?;
        if !self.first[usize::from(*at.first()?)] {
            return None;
        }
        LOOKED_UP.iter().position(|name| {
            let name = name.as_bytes();
            at.len() > name.len() && at.starts_with(name) && at[name.len()] == 0
        })
    }
}

/// vmlinux, with a module's split BTF over it: ids and string offsets
/// below the module's first are vmlinux's.
#[derive(Clone, Copy)]
struct View<'a> {
    base: &'a Section,
    split: Option<&'a Section>,
}

impl<'a> View<'a> {
    fn record(&self, id: u32) -> Option<Record<'a>> {
        match self.split {
            Some(split) if id >= split.first_id => split.record(id),
            _ => self.base.record(id),
        }
    }

    fn name(&self, off: u32) -> &'a str {
        let found = match self.split {
            Some(split) if off >= split.first_str => split.string(off),
            _ => self.base.string(off),
        };
        found.unwrap_or_default()
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn strip(&self, mut id: u32) -> Option<Record<'a>> {
        for _ in 0..MAX_DEPTH {
            let record = self.record(id)?;
            match record.kind {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = record.size_or_type,
                _ => return Some(record),
            }
        }
        None
    }

    fn is_skb_ptr(&self, id: u32) -> bool {
        let Some(ptr) = self.strip(id).filter(|r| r.kind == PTR) else {
            return false;
        };
        self.strip(ptr.size_or_type)
            .is_some_and(|s| s.kind == STRUCT && self.name(s.name_off) == "sk_buff")
    }

    fn is_drop_reason(&self, id: u32) -> bool {
        self.strip(id)
            .is_some_and(|e| e.kind == ENUM && self.name(e.name_off) == "skb_drop_reason")
    }

    /// How a return value of type `id` (0: `void`) reads.
    fn returns(&self, id: u32) -> Returns {
        if id == 0 {
            return Returns::Nothing;
        }
        let Some(r) = self.strip(id) else {
            return Returns::Nothing;
        };
        let size = (r.size_or_type as usize).min(8) as u8;
        let signed = match r.kind {
            PTR => return Returns::Pointer,
            // The encoding's BTF_INT_SIGNED bit.
            INT => u32_at(r.data, 0).is_some_and(|e| e >> 24 & 1 == 1),
            ENUM | ENUM64 => r.kind_flag,
            _ => return Returns::Nothing,
        };
        match signed {
            true => Returns::Signed(size),
            false => Returns::Unsigned(size),
        }
    }
}

/// A prototype's parameters: (name offset, type id) each.
fn params(proto: Record<'_>) -> impl Iterator<Item = (u32, u32)> + '_ {
    (0..proto.vlen)
        .map_while(|i| Some((u32_at(proto.data, i * 8)?, u32_at(proto.data, i * 8 + 4)?)))
}

/// Every function of `section` (vmlinux's, or a module's over `base`) that
/// takes a `struct sk_buff *`, as a candidate of `module`.
pub fn skb_functions(base: &Section, split: Option<&Section>, module: &str) -> Vec<Candidate> {
    let view = View { base, split };
    let section = split.unwrap_or(base);
    // Per type id, whether it is an skb pointer: 0 not known yet, 1 no, 2 yes.
    let mut skb_types = vec![0u8; (section.first_id as usize) + section.offsets.len()];
    let mut is_skb = |ty: u32| {
        let Some(known) = skb_types.get_mut(ty as usize) else {
            return false;
        };
        if *known == 0 {
            *known = 1 + u8::from(view.is_skb_ptr(ty));
        }
        *known == 2
    };
    let mut out = Vec::new();
    for &id in &section.funcs {
        let Some(func) = section.record(id) else {
            continue;
        };
        let Some(proto) = view
            .record(func.size_or_type)
            .filter(|p| p.kind == FUNC_PROTO)
        else {
            continue;
        };
        let Some(pos) = params(proto).position(|(_, ty)| is_skb(ty)) else {
            continue;
        };
        out.push(candidate(&view, &func, &proto, id, pos, module));
    }
    out
}

fn candidate(
    view: &View<'_>,
    func: &Record<'_>,
    proto: &Record<'_>,
    btf_id: u32,
    skb_pos: usize,
    module: &str,
) -> Candidate {
    let name = view.name(func.name_off);
    let drops = name.contains("kfree_skb") || name.contains("drop");
    let reason_pos = match drops {
        true => params(*proto).position(|(_, ty)| view.is_drop_reason(ty)),
        false => None,
    };
    Candidate {
        target: Target {
            name: name.to_string(),
            module: module.to_string(),
            addr: 0,
            address: Default::default(),
            skb_pos: skb_pos as u8,
            nargs: proto.vlen as u8,
            reason_pos: reason_pos.map(|p| p as u8),
            kind: TargetKind::Function,
            btf_id,
            returns: view.returns(proto.size_or_type),
        },
        exclusion: exclusion(view, proto),
    }
}

fn exclusion(view: &View<'_>, proto: &Record<'_>) -> Option<Exclusion> {
    // A variadic prototype ends with a parameter of no name and no type.
    if params(*proto).any(|(name, ty)| name == 0 && ty == 0) {
        return Some(Exclusion::Variadic);
    }
    params(*proto)
        .any(|(_, ty)| {
            view.strip(ty)
                .is_some_and(|t| matches!(t.kind, STRUCT | UNION))
        })
        .then_some(Exclusion::AggregateByValue)
}

/// The record at `at` in the type records, if it lies whole inside them.
fn record_at(types: &[u8], at: usize) -> Option<Record<'_>> {
    let name_off = u32_at(types, at)?;
    let info = u32_at(types, at + 4)?;
    let size_or_type = u32_at(types, at + 8)?;
    let kind = (info >> 24 & 0x1f) as u8;
    let vlen = (info & 0xffff) as usize;
    let start = at + 12;
    let data = types.get(start..start.checked_add(data_len(kind, vlen)?)?)?;
    Some(Record {
        name_off,
        kind,
        vlen,
        kind_flag: info >> 31 == 1,
        size_or_type,
        data,
    })
}

/// How many bytes follow a record's 12-byte header, by kind; `None` for
/// a kind this reader does not know, whose length it cannot skip.
fn data_len(kind: u8, vlen: usize) -> Option<usize> {
    match kind {
        INT | VAR | DECL_TAG => Some(4),
        ARRAY => Some(12),
        STRUCT | UNION | DATASEC | ENUM64 => Some(12 * vlen),
        ENUM | FUNC_PROTO => Some(8 * vlen),
        PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => Some(0),
        _ => None,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Type records (ids from `first_id`) and strings, as BTF bytes.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = vec![0x9f, 0xeb, 1, 0];
        let (type_len, str_len) = (types.len() as u32, strings.len() as u32);
        for word in [24, 0, type_len, type_len, str_len] {
            out.extend(u32::to_le_bytes(word));
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    fn info(kind: u8, vlen: u32) -> u32 {
        u32::from(kind) << 24 | vlen
    }

    /// A module's function whose skb type is vmlinux's, through a const
    /// pointer the module defines: ids and strings continue vmlinux's.
    #[test]
    fn module_functions_read_through_vmlinux_types() {
        // vmlinux strings: 1 "sk_buff", 9 "int"
        let base = Section::vmlinux(blob(
            &[
                1,
                info(STRUCT, 0),
                8, // 1: struct sk_buff
                0,
                info(PTR, 0),
                1, // 2: struct sk_buff *
                9,
                info(INT, 0),
                4,
                1 << 24 | 32, // 3: int (signed)
            ],
            b"\0sk_buff\0int\0",
        ))
        .unwrap();
        // module strings follow vmlinux's 13 bytes: 14 "mod_rcv", 22 "dev"
        let split = Section::split(
            blob(
                &[
                    0,
                    info(CONST, 0),
                    1, // 4: const struct sk_buff
                    0,
                    info(PTR, 0),
                    4, // 5: const struct sk_buff *
                    0,
                    info(FUNC_PROTO, 2),
                    3,
                    22,
                    3,
                    0,
                    5, // 6: int (int dev, const skb *)
                    14,
                    info(FUNC, 1),
                    6, // 7: mod_rcv
                    14,
                    info(FUNC, 1),
                    99, // 8: a function whose prototype is missing
                ],
                b"\0mod_rcv\0dev\0",
            ),
            &base,
        )
        .unwrap();
        let found = skb_functions(&base, Some(&split), "m");
        assert_eq!(found.len(), 1);
        let t = &found[0].target;
        assert_eq!((t.name.as_str(), t.module.as_str()), ("mod_rcv", "m"));
        assert_eq!((t.btf_id, t.skb_pos, t.nargs), (7, 1, 2));
        assert_eq!(t.returns, Returns::Signed(4));
        assert_eq!(found[0].exclusion, None);
        assert!(skb_functions(&base, None, "vmlinux").is_empty());
    }

    /// Cut anywhere, the bytes give fewer types or none, never a panic.
    #[test]
    fn truncated_records_end_the_walk() {
        let bytes = blob(&[1, info(STRUCT, 3), 8, 0, 0, 0], b"\0sk_buff\0");
        for len in 0..bytes.len() {
            if let Some(s) = Section::vmlinux(bytes[..len].to_vec()) {
                assert!(s.offsets.is_empty());
                assert!(skb_functions(&s, None, "vmlinux").is_empty());
            }
        }
    }
}
