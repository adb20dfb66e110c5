//! Target discovery: which kernel functions (or tracepoints) take a
//! `struct sk_buff *`, where that argument sits, and whether the running
//! kernel can attach to them.
//!
//! Sources, all read once at start-up: vmlinux BTF, each module's split BTF
//! (`/sys/kernel/btf/<module>`), and `/proc/kallsyms` for addresses.

/// What a target is attached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A kernel function (kprobe, fentry/fexit).
    Function,
    /// A BTF-enabled tracepoint (`tp_btf`); `name` is the tracepoint's name.
    Tracepoint,
}

/// One traceable place, as shown in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Function or tracepoint name, e.g. `ip_rcv` or `netif_receive_skb`.
    pub name: String,
    /// `vmlinux` for the core kernel, else the module name (e.g. `veth`).
    pub module: String,
    /// Address from `/proc/kallsyms`; 0 for tracepoints.
    pub addr: u64,
    /// 0-based position of the first `struct sk_buff *` parameter.
    pub skb_pos: u8,
    /// Number of parameters.
    pub nargs: u8,
    /// 0-based position of an `enum skb_drop_reason` parameter, if any.
    pub reason_pos: Option<u8>,
    pub kind: TargetKind,
    /// The function's BTF id in its object (vmlinux, or the module's split
    /// BTF), which fentry programs are loaded against; for a tracepoint,
    /// its `btf_trace_<name>` type, which tp_btf programs are loaded against.
    pub btf_id: u32,
}

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator;
use ipft_common::Offsets;
use regex::Regex;
use std::os::fd::{AsRawFd, FromRawFd};

/// Where the kernel publishes its BTF.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";

/// Why a function with an skb parameter cannot be traced at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    Variadic,
    /// A struct or union passed by value: argument positions become unknowable.
    AggregateByValue,
}

/// A function or tracepoint with a `struct sk_buff *` parameter, straight
/// from BTF, before any backend-specific limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub target: Target,
    pub exclusion: Option<Exclusion>,
}

/// The kernel's BTF: vmlinux plus every module's split BTF.
pub struct KernelBtf {
    pub vmlinux: Btf,
    /// (module name, split BTF), sorted by name.
    pub modules: Vec<(String, Btf)>,
}

impl KernelBtf {
    /// Reads vmlinux BTF and, when `with_modules`, every module's split BTF.
    pub fn load(dir: &Path, with_modules: bool) -> Result<Self> {
        let vmlinux_path = dir.join("vmlinux");
        let vmlinux = open_vmlinux(&vmlinux_path).map_err(|e| btf_error(&vmlinux_path, e))?;
        let modules = if with_modules {
            Self::load_modules(dir, &vmlinux)
        } else {
            Vec::new()
        };
        Ok(KernelBtf { vmlinux, modules })
    }

    /// Every module's split BTF; a module unloaded while we read, or a bad
    /// file, only loses that module.
    pub fn load_modules(dir: &Path, vmlinux: &Btf) -> Vec<(String, Btf)> {
        module_btf_paths(dir)
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                Some((name, Btf::from_split_file(&path, vmlinux).ok()?))
            })
            .collect()
    }
}

/// Opens vmlinux BTF without parsing all of it: btf-rs's mmap backend reads
/// types where they lie, which makes start-up several times quicker than
/// parsing ~150,000 types up front (measured on 6.18: 19 ms against 126 ms).
/// Kernels before 6.15 cannot mmap the sysfs file, so its bytes are copied
/// to an in-memory file first (read once: 6 MB in 4 KiB pieces costs under
/// emulation). A file shorter than its header says is refused before
/// anything reads past its end.
fn open_vmlinux(path: &Path) -> btf_rs::Result<Btf> {
    let mut file = fs::File::open(path)?;
    let mut header = Vec::with_capacity(24);
    io::Read::read_to_end(&mut io::Read::take(&mut file, 24), &mut header)?;
    if is_short(&header, file.metadata()?.len()) {
        return Err(btf_rs::Error::IO(io::Error::from(
            io::ErrorKind::UnexpectedEof,
        )));
    }
    if let Ok(btf) = Btf::from_file_with_backend(path, btf_rs::Backend::Mmap) {
        return Ok(btf);
    }
    io::Seek::rewind(&mut file)?;
    let copy = memory_file(&mut file)?;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
    // The mapping outlives the fd: closing `copy` afterwards is fine.
    Btf::from_file_with_backend(by_fd, btf_rs::Backend::Mmap)
}

/// An anonymous in-memory file holding what `from` reads.
fn memory_file(from: &mut impl io::Read) -> io::Result<fs::File> {
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"ipft-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    // Read, then one write: io::copy's splice path is slower from sysfs.
    let mut bytes = Vec::new();
    from.read_to_end(&mut bytes)?;
    io::Write::write_all(&mut file, &bytes)?;
    Ok(file)
}

/// One sentence: why the BTF at `path` cannot be used, and what to do.
fn btf_error(path: &Path, err: btf_rs::Error) -> anyhow::Error {
    let shown = path.display();
    let need = "ipft needs the kernel's BTF to find what it can trace";
    match err {
        btf_rs::Error::IO(e) if e.kind() == io::ErrorKind::NotFound => anyhow!(
            "the kernel has no BTF at {shown}: ipft needs a kernel built with CONFIG_DEBUG_INFO_BTF"
        ),
        btf_rs::Error::IO(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
            anyhow!("cannot read the kernel's BTF at {shown} ({e}): {need}")
        }
        _ if is_truncated(path) => anyhow!("the kernel's BTF at {shown} is truncated: {need}"),
        e => anyhow!("the kernel's BTF at {shown} is corrupt ({e}): {need}"),
    }
}

/// Whether the file is shorter than its BTF header says (or than a header).
fn is_truncated(path: &Path) -> bool {
    fs::read(path).is_ok_and(|bytes| is_short(&bytes, bytes.len() as u64))
}

/// Whether a file of `len` bytes that starts with `bytes` is shorter than
/// its BTF header says (or than a header).
fn is_short(bytes: &[u8], len: u64) -> bool {
    let Some(header) = bytes.get(..24) else {
        return true;
    };
    let little = match header[0..2] {
        [0x9f, 0xeb] => true,
        [0xeb, 0x9f] => false,
        _ => return false, // not BTF at all: corrupt, not short
    };
    let word = |at: usize| {
        let raw: [u8; 4] = header[at..at + 4].try_into().unwrap_or_default();
        u64::from(match little {
            true => u32::from_le_bytes(raw),
            false => u32::from_be_bytes(raw),
        })
    };
    // hdr_len, then type_off/type_len and str_off/str_len, after the header.
    let end = word(4) + (word(8) + word(12)).max(word(16) + word(20));
    len < end
}

fn module_btf_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "vmlinux"))
        .collect();
    paths.sort();
    paths
}

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

/// How deep anonymous members nest, or modifiers chain, before ipft gives
/// up: real kernels stay within a handful, and a corrupt BTF can make a
/// type contain or name itself, which would otherwise never end.
const MAX_DEPTH: usize = 32;

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
            },
            exclusion: exclusion(btf, &proto.parameters),
        });
    }
}

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
                skb_pos: pos as u8,
                nargs: params.len() as u8,
                reason_pos: reason_position(btf, tp_name, params),
                kind: TargetKind::Tracepoint,
                btf_id,
            },
            exclusion: None,
        });
    }
    dedup(out)
}

/// Where an `enum skb_drop_reason` parameter is, in a function that drops
/// (kfree_skb_reason, sk_skb_reason_drop, the kfree_skb tracepoint, …).
/// Helpers that pass a reason along (skb_release_data) often get a
/// placeholder (NOT_SPECIFIED) even for a consumed packet: not shown.
fn reason_position(btf: &Btf, name: &str, params: &[btf_rs::Parameter]) -> Option<u8> {
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

/// Names of `enum skb_drop_reason` values, without the `SKB_DROP_REASON_`
/// prefix (`NETFILTER_DROP`); empty on kernels without drop reasons.
pub fn drop_reasons(btf: &Btf) -> HashMap<u32, String> {
    let Ok(types) = btf.resolve_types_by_name("skb_drop_reason") else {
        return HashMap::new();
    };
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

fn resolve_ptr_target(btf: &Btf, id: Option<u32>) -> Option<Type> {
    match btf.resolve_type_by_id(id?).ok()? {
        Type::Ptr(ptr) => btf.resolve_type_by_id(ptr.get_type_id()?).ok(),
        _ => None,
    }
}

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

/// Resolves a type id through typedefs and qualifiers.
fn strip_modifiers(btf: &Btf, mut id: Option<u32>) -> Option<Type> {
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
struct SkbTypes(HashMap<u32, bool>);

impl SkbTypes {
    fn is_skb_ptr(&mut self, btf: &Btf, param: &btf_rs::Parameter) -> bool {
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
fn dedup(candidates: Vec<Candidate>) -> Vec<Candidate> {
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

/// Addresses of text symbols in `/proc/kallsyms`, keyed by (module, name);
/// only names in `wanted` are kept, so the map stays small.
pub fn kallsyms(text: &str, wanted: &HashSet<&str>) -> HashMap<(String, String), u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((addr, kind, name, module)) = kallsyms_line(line) else {
            continue;
        };
        if !matches!(kind, b't' | b'T') || !wanted.contains(name) {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        out.entry((module.to_string(), name.to_string()))
            .or_insert(addr);
    }
    out
}

/// Splits a `/proc/kallsyms` line, `ADDR KIND NAME` with `\t[MODULE]` for
/// a module's symbol, into its fields, the module `vmlinux` when none: by
/// hand, because the kernel's 150,000 lines are read at every start.
fn kallsyms_line(line: &str) -> Option<(&str, u8, &str, &str)> {
    let (addr, rest) = line.split_once(' ')?;
    let (kind, rest) = rest.split_once(' ')?;
    let &[kind] = kind.as_bytes() else {
        return None;
    };
    let (name, module) = match rest.split_once('\t') {
        Some((name, module)) => (name, module.trim_matches(|c| c == '[' || c == ']')),
        None => (rest, "vmlinux"),
    };
    Some((addr, kind, name.trim_end(), module))
}

/// Fills in addresses; returns the candidates kallsyms does not know
/// (inlined everywhere, or removed) separately.
pub fn resolve_addresses(
    candidates: Vec<Candidate>,
    kallsyms_text: &str,
) -> (Vec<Candidate>, usize) {
    let wanted: HashSet<&str> = candidates.iter().map(|c| c.target.name.as_str()).collect();
    let symbols = kallsyms(kallsyms_text, &wanted);
    let total = candidates.len();
    let found: Vec<Candidate> = candidates
        .into_iter()
        .filter_map(|mut c| {
            let key = (c.target.module.clone(), c.target.name.clone());
            let addr = *symbols.get(&key)?;
            c.target.addr = addr;
            Some(c)
        })
        .collect();
    let missing = total - found.len();
    (found, missing)
}

/// The user's `-r` and `--module-regex`.
#[derive(Default)]
pub struct Filter<'a> {
    pub name: Option<&'a Regex>,
    pub module: Option<&'a Regex>,
}

impl Filter<'_> {
    pub fn allows(&self, target: &Target) -> bool {
        self.name.is_none_or(|re| re.is_match(&target.name))
            && self.module.is_none_or(|re| re.is_match(&target.module))
    }
}

/// Reads `/proc/kallsyms`, failing with a sentence the user can act on.
pub fn read_kallsyms() -> Result<String> {
    let text = fs::read_to_string("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
    // Judge by a function: per-CPU symbols (type A) really are at 0 on
    // newer kernels, and come first.
    if text
        .lines()
        .find(|l| matches!(l.split_whitespace().nth(1), Some("t" | "T")))
        .is_some_and(|l| l.starts_with("0000000000000000"))
    {
        bail!("/proc/kallsyms hides addresses: run ipft as root");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _text
ffffffff81a00010 T ip_rcv
ffffffff81a00020 t ip_rcv_finish
ffffffff81a00030 D ip_rcv_data
ffffffffc0a01000 t veth_xmit\t[veth]
ffffffffc0b01000 t veth_xmit\t[other]
";

    fn candidate(name: &str, module: &str) -> Candidate {
        Candidate {
            target: Target {
                name: name.into(),
                module: module.into(),
                addr: 0,
                skb_pos: 0,
                nargs: 1,
                reason_pos: None,
                kind: TargetKind::Function,
                btf_id: 0,
            },
            exclusion: None,
        }
    }

    #[test]
    fn kallsyms_keeps_wanted_text_symbols_per_module() {
        let wanted: HashSet<&str> = ["ip_rcv", "veth_xmit", "ip_rcv_data"].into();
        let syms = kallsyms(KALLSYMS, &wanted);
        assert_eq!(
            syms.get(&("vmlinux".into(), "ip_rcv".into())),
            Some(&0xffffffff81a00010)
        );
        assert_eq!(
            syms.get(&("veth".into(), "veth_xmit".into())),
            Some(&0xffffffffc0a01000)
        );
        assert_eq!(
            syms.get(&("other".into(), "veth_xmit".into())),
            Some(&0xffffffffc0b01000)
        );
        assert!(
            !syms.contains_key(&("vmlinux".into(), "ip_rcv_data".into())),
            "data symbol kept"
        );
        assert_eq!(syms.len(), 3);
    }

    #[test]
    fn unresolved_functions_are_counted_not_kept() {
        let cands = vec![
            candidate("ip_rcv", "vmlinux"),
            candidate("inlined_fn", "vmlinux"),
            candidate("veth_xmit", "veth"),
        ];
        let (found, missing) = resolve_addresses(cands, KALLSYMS);
        assert_eq!(missing, 1);
        assert_eq!(
            found.iter().map(|c| c.target.addr).collect::<Vec<_>>(),
            [0xffffffff81a00010, 0xffffffffc0a01000]
        );
    }

    #[test]
    fn filter_matches_unanchored() {
        let name = Regex::new("rcv").unwrap();
        let module = Regex::new("^vmlinux$").unwrap();
        let filter = Filter {
            name: Some(&name),
            module: Some(&module),
        };
        assert!(filter.allows(&candidate("ip_rcv_finish", "vmlinux").target));
        assert!(!filter.allows(&candidate("ip_rcv", "veth").target));
        assert!(!filter.allows(&candidate("ip_output", "vmlinux").target));
    }

    // The tests below read the running kernel's BTF: discovery must work on
    // the real thing, not only on fixtures.
    fn running_kernel() -> KernelBtf {
        KernelBtf::load(Path::new(SYS_BTF_DIR), true).expect("this kernel has BTF")
    }

    #[test]
    fn btf_read_through_an_in_memory_file_is_the_same() {
        // The path kernels before 6.15 take: sysfs BTF cannot be mmap'ed.
        let mut sysfs = fs::File::open(Path::new(SYS_BTF_DIR).join("vmlinux")).unwrap();
        let copy = memory_file(&mut sysfs).unwrap();
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        let btf = Btf::from_file_with_backend(by_fd, btf_rs::Backend::Mmap).unwrap();
        drop(copy);
        let direct = running_kernel();
        assert_eq!(offsets(&btf).unwrap(), offsets(&direct.vmlinux).unwrap());
        assert_eq!(tracepoints(&btf), tracepoints(&direct.vmlinux));
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

    #[test]
    fn missing_btf_is_one_clear_error() {
        let err = KernelBtf::load(Path::new("/nonexistent"), false)
            .err()
            .unwrap();
        assert!(format!("{err}").contains("CONFIG_DEBUG_INFO_BTF"));
    }

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

        fn parse(&self) -> Btf {
            let types: Vec<u8> = self.types.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut out = vec![0x9f, 0xeb, 1, 0];
            let (type_len, str_len) = (types.len() as u32, self.strings.len() as u32);
            for word in [24, 0, type_len, type_len, str_len] {
                out.extend(u32::to_le_bytes(word));
            }
            out.extend(types);
            out.extend(&self.strings);
            Btf::from_bytes(&out).expect("a well-formed blob")
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
        let btf = blob.parse();
        let kernel = KernelBtf {
            vmlinux: btf,
            modules: Vec::new(),
        };
        assert!(functions(&kernel).is_empty());
        assert!(tracepoints(&kernel.vmlinux).is_empty());
        let err = offsets(&kernel.vmlinux).unwrap_err();
        assert_eq!(err.to_string(), "the kernel's BTF has no sk_buff.mark");
    }

    /// The running kernel's BTF cut short or scribbled on: every step of
    /// discovery fails with a sentence or works, never panics.
    #[test]
    fn damaged_btf_fails_with_a_sentence() {
        let real = fs::read(Path::new(SYS_BTF_DIR).join("vmlinux")).unwrap();
        let dir = std::env::temp_dir().join(format!("ipft-btf-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut rng = crate::random::Random::new(5);
        let mut cases: Vec<Vec<u8>> = [0, 1, 4, 23, 24, 25, 4096, real.len() / 2]
            .iter()
            .map(|&n| real[..n].to_vec())
            .collect();
        for i in 0..8 {
            let mut bytes = real.clone();
            // Half in the header, half in the first types.
            let span = if i % 2 == 0 { 24 } else { 64 * 1024 };
            for _ in 0..4 {
                bytes[rng.below(span) as usize] = rng.next() as u8;
            }
            cases.push(bytes);
        }
        for bytes in cases {
            fs::write(dir.join("vmlinux"), &bytes).unwrap();
            let Ok(kernel) = KernelBtf::load(&dir, false) else {
                let err = KernelBtf::load(&dir, false).err().unwrap().to_string();
                assert!(
                    err.contains("truncated") || err.contains("corrupt"),
                    "{err}"
                );
                continue;
            };
            let _ = offsets(&kernel.vmlinux);
            let _ = drop_reasons(&kernel.vmlinux);
            let _ = tracepoints(&kernel.vmlinux);
            let _ = functions(&kernel);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
