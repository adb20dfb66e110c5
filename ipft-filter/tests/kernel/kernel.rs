//! What the differential test needs of the running kernel, without ipft:
//! the `sk_buff` layout and the `bpf_rdonly_cast` ids from its BTF (as
//! ipft's `discover` finds them), and a tc classifier loaded and run on a
//! packet by bpf(2) (`BPF_PROG_LOAD`, `BPF_PROG_TEST_RUN`), with aya-obj's
//! `bpf_attr`. [`unavailable`] says why the kernel cannot run the test.
use std::{
    ffi::c_char,
    io,
    mem::offset_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_type};
use btf_rs::{Btf, BtfType, Type};
use ipft_filter::{
    insn::{self, Insn},
    Cast, SkbFields, BYTE_ARRAYS,
};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Anonymous structs and unions nest no deeper than this in `sk_buff`.
const MAX_DEPTH: usize = 8;

/// Why this machine cannot run the test (no BTF, or no tc program loaded
/// and run with `BPF_PROG_TEST_RUN`), or `None` when it can.
pub fn unavailable() -> Option<String> {
    if let Err(err) = Btf::from_file(VMLINUX) {
        return Some(format!("no kernel BTF at {VMLINUX} ({err})"));
    }
    let prog = match load(&[insn::mov64_imm(0, 0), insn::exit()]) {
        Ok(prog) => prog,
        Err(why) => return Some(format!("a tc classifier cannot be loaded: {why}")),
    };
    match test_run(&prog, &[0; 14], &[]) {
        Ok(_) => None,
        Err(err) => Some(format!("BPF_PROG_TEST_RUN is refused ({err})")),
    }
}

/// The kernel's BTF.
pub fn vmlinux() -> Btf {
    Btf::from_file(VMLINUX).expect("the kernel's BTF, which unavailable() read")
}

/// Where the filter's `sk_buff` fields lie in this kernel.
pub fn skb_fields(btf: &Btf) -> SkbFields {
    let skb = find_struct(btf, "sk_buff").expect("struct sk_buff in BTF");
    SkbFields::find(|field| {
        member_bit_offset(btf, &skb, field, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| anyhow::anyhow!("no sk_buff.{field}"))
    })
    .expect("the filter's sk_buff fields")
}

/// The `bpf_rdonly_cast` ids, where the kernel has the kfunc: its FUNC,
/// `struct sk_buff`, and the struct of [`BYTE_ARRAYS`] with the longest
/// byte array here.
pub fn cast(btf: &Btf) -> Option<Cast> {
    let first = |name, want: fn(&Type) -> bool| {
        let ids = btf.resolve_ids_by_name(name).unwrap_or_default();
        ids.into_iter()
            .find(|&id| btf.resolve_type_by_id(id).is_ok_and(|t| want(&t)))
    };
    let longest = BYTE_ARRAYS
        .iter()
        .flat_map(|name| btf.resolve_ids_by_name(name).unwrap_or_default())
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

fn find_struct(btf: &Btf, name: &str) -> Option<btf_rs::Struct> {
    let ids = btf.resolve_ids_by_name(name).ok()?;
    ids.into_iter()
        .find_map(|id| match btf.resolve_type_by_id(id).ok()? {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
}

/// A member's bit offset by name, descending into anonymous structs and
/// unions.
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

/// The length of the array of one-byte integers that struct `id` begins
/// with, when it does and the array has at least 4.
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

fn strip_modifiers(btf: &Btf, mut id: Option<u32>) -> Option<Type> {
    for _ in 0..MAX_DEPTH {
        let t = btf.resolve_type_by_id(id?).ok()?;
        match &t {
            Type::Typedef(_)
            | Type::Const(_)
            | Type::Volatile(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => id = t.as_btf_type()?.get_type_id(),
            _ => return Some(t),
        }
    }
    None
}

/// An attr of zeros, whose members the calls fill.
fn zeroed() -> bpf_attr {
    // SAFETY: bpf_attr is a union of structs of plain integers: all zeros
    // is a valid value of each member.
    unsafe { std::mem::zeroed() }
}

/// Loads `insns` as a tc classifier; the error is the kernel's, with the
/// end of the verifier's log (asked for only then, as ipft does: a log
/// that overflows fails the load).
pub fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
    prog_load(insns, &mut []).map_err(|err| {
        let mut log = vec![0u8; 1 << 16];
        let _ = prog_load(insns, &mut log);
        match log_tail(&log) {
            tail if tail.is_empty() => err.to_string(),
            tail => format!("{err}: {tail}"),
        }
    })
}

fn prog_load(insns: &[Insn], log: &mut [u8]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let prog = unsafe { &mut attr.__bindgen_anon_3 };
    prog.prog_type = bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32;
    prog.insn_cnt = insns.len() as u32;
    prog.insns = insns.as_ptr() as u64;
    prog.license = license.as_ptr() as u64;
    if !log.is_empty() {
        prog.log_level = 1;
        prog.log_size = log.len() as u32;
        prog.log_buf = log.as_mut_ptr() as u64;
    }
    for (to, &from) in prog.prog_name.iter_mut().zip(b"ipft_filter_tes") {
        *to = from as c_char;
    }
    let size = offset_of!(bpf_attr, __bindgen_anon_3.core_relo_cnt) + 4;
    // SAFETY: insns, license and log outlive the call, with the sizes
    // stated; on success the kernel returns a new fd, which is ours.
    let fd = unsafe { bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr, size) }?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_PROG_TEST_RUN` of `prog` on `packet`, with `context` as its
/// `struct __sk_buff`'s first bytes (none when empty): the return value.
pub fn test_run(prog: &OwnedFd, packet: &[u8], context: &[u8]) -> io::Result<u32> {
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let test = unsafe { &mut attr.test };
    test.prog_fd = prog.as_raw_fd() as u32;
    test.data_size_in = packet.len() as u32;
    test.data_in = packet.as_ptr() as u64;
    test.ctx_size_in = context.len() as u32;
    if !context.is_empty() {
        test.ctx_in = context.as_ptr() as u64;
    }
    let size = offset_of!(bpf_attr, test.ctx_out) + 8;
    // SAFETY: packet and context outlive the call; no output buffer is
    // given, so the kernel writes only into attr.
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr, size) }?;
    // SAFETY: the member filled above, which the kernel wrote retval into.
    Ok(unsafe { attr.test.retval })
}

/// # Safety
/// Every pointer in `attr`'s first `size` bytes must be valid for `cmd`.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr, size: usize) -> io::Result<i32> {
    let ret = libc::syscall(libc::SYS_bpf, cmd as u32, attr as *mut bpf_attr, size);
    match ret {
        ..0 => Err(io::Error::last_os_error()),
        _ => Ok(ret as i32),
    }
}

/// The last lines of a verifier log: where it gave up, and why.
fn log_tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default());
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
