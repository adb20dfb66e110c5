//! Typed wrappers for the bpf(2) commands that aya 0.14 does not offer, or
//! offers only one program at a time: loading a program with an expected
//! attach type and BTF target ([`prog_load`]), creating a kprobe-multi link
//! ([`link_create_kprobe_multi`]), attaching a tracing program
//! ([`raw_tracepoint_open`]), and finding the kernel's module BTF objects
//! ([`btf_get_next_id`], [`btf_get_fd_by_id`], [`btf_name`]), and running a
//! program once on a packet ([`prog_test_run`]: the `-f` filter's tests).
//!
//! The attr is the kernel's `union bpf_attr` as aya-obj 0.3's bindings lay
//! it out (include/uapi/linux/bpf.h of 6.10; every member ipft sets is
//! there), and so are the command, program type and attach type numbers.
//! Each wrapper fills one member of a zeroed attr and passes the kernel the
//! attr's bytes up to the last field it sets ([`Size`]): the kernel reads
//! a shorter attr's missing tail as zeros, while an older kernel would check
//! a longer one's unknown tail for zeros. It returns the new file
//! descriptor or the kernel's error. Under `cfg(test)` the call goes to a
//! per-thread fake (`sys/fake.rs`) that records the attr bytes, so the
//! encoding is tested without a kernel.
use std::{
    ffi::CStr,
    io,
    mem::{offset_of, size_of},
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use aya_obj::generated::{
    bpf_attach_type, bpf_attr, bpf_btf_info, bpf_cmd, bpf_prog_type, BPF_F_KPROBE_MULTI_RETURN,
    BPF_OBJ_NAME_LEN,
};
use ipft_filter::insn::Insn;

use super::perf::Probe;

/// `BPF_OBJ_NAME_LEN`: program names are cut to 15 bytes plus a NUL.
const OBJ_NAME_LEN: usize = BPF_OBJ_NAME_LEN as usize;

/// `enum bpf_prog_type`: the program types ipft loads itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    Kprobe = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32,
    /// A tc classifier: the `-f` filter is checked and tested inside one,
    /// since the kernel runs it on a packet with `BPF_PROG_TEST_RUN`.
    SchedCls = bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32,
    Tracing = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32,
}

/// `enum bpf_attach_type`: the attach types ipft uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum AttachType {
    /// None expected (kprobes attached through perf events; 0 is also
    /// `BPF_CGROUP_INET_INGRESS`, which the kernel ignores for them).
    None = 0,
    /// A BTF tracepoint (`tp_btf`).
    TraceRawTp = bpf_attach_type::BPF_TRACE_RAW_TP as u32,
    TraceFentry = bpf_attach_type::BPF_TRACE_FENTRY as u32,
    TraceFexit = bpf_attach_type::BPF_TRACE_FEXIT as u32,
    TraceKprobeMulti = bpf_attach_type::BPF_TRACE_KPROBE_MULTI as u32,
}

/// How many bytes of the attr a command passes: its member, up to the
/// last field ipft sets.
struct Size;

impl Size {
    /// `BPF_PROG_LOAD`, up to `core_relo_cnt` (named so that it, and the
    /// padding before it, is zero; no program BTF, func_info or line_info).
    const PROG_LOAD: usize = offset_of!(bpf_attr, __bindgen_anon_3.core_relo_cnt) + 4;
    /// `BPF_PROG_TEST_RUN`, up to `ctx_out`.
    #[cfg(test)]
    const TEST_RUN: usize = offset_of!(bpf_attr, test.ctx_out) + 8;
    /// `BPF_LINK_CREATE` with its `kprobe_multi` arm, up to `cookies`.
    const LINK_CREATE_KPROBE_MULTI: usize =
        offset_of!(bpf_attr, link_create.__bindgen_anon_3.kprobe_multi.cookies) + 8;
    /// `BPF_MAP_*_ELEM`, up to `flags`.
    const MAP_ELEM: usize = offset_of!(bpf_attr, __bindgen_anon_2.flags) + 8;
    /// `BPF_MAP_FREEZE`: `map_fd` alone.
    const MAP_FD: usize = offset_of!(bpf_attr, __bindgen_anon_2.map_fd) + 4;
    /// `BPF_RAW_TRACEPOINT_OPEN`, up to `prog_fd` and the zero padding
    /// after it (kernels before 6.10 refuse a non-zero tail).
    const RAW_TRACEPOINT_OPEN: usize = offset_of!(bpf_attr, raw_tracepoint.cookie);
    /// `BPF_*_GET_NEXT_ID` and `BPF_*_GET_FD_BY_ID`, up to `open_flags`.
    const GET_ID: usize = offset_of!(bpf_attr, __bindgen_anon_6.open_flags) + 4;
    /// `BPF_OBJ_GET_INFO_BY_FD`.
    const INFO: usize = offset_of!(bpf_attr, info.info) + 8;
}

/// An attr of zeros, whose members the wrappers fill.
fn zeroed() -> bpf_attr {
    // SAFETY: bpf_attr is a union of structs of plain integers: all zeros
    // is a valid value of each member.
    unsafe { std::mem::zeroed() }
}

/// A program to load with [`prog_load`].
pub struct Program<'a> {
    pub prog_type: ProgType,
    pub expected_attach_type: AttachType,
    /// Shown by `bpftool prog`; cut to 15 bytes.
    pub name: &'a str,
    pub insns: &'a [Insn],
    pub license: &'a CStr,
    /// Tracing programs: the BTF id of the function they attach to, in
    /// vmlinux or in a module's BTF object (`attach_btf_obj`).
    pub attach_btf_id: u32,
    pub attach_btf_obj: Option<BorrowedFd<'a>>,
}

/// `BPF_PROG_LOAD`: loads `prog` and returns its fd. With a non-empty `log`
/// (the kernel wants at least 128 bytes) the verifier writes its log there
/// (level 1); pass an empty one for a fast load.
pub fn prog_load(prog: &Program<'_>, log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = prog.prog_type as u32;
    load.insn_cnt = len_u32(prog.insns.len())?;
    load.insns = prog.insns.as_ptr() as u64;
    load.license = prog.license.as_ptr() as u64;
    load.prog_name = obj_name(prog.name);
    load.expected_attach_type = prog.expected_attach_type as u32;
    load.attach_btf_id = prog.attach_btf_id;
    load.__bindgen_anon_1.attach_btf_obj_fd =
        prog.attach_btf_obj.map_or(0, |fd| fd.as_raw_fd() as u32);
    if !log.is_empty() {
        load.log_level = 1;
        load.log_size = len_u32(log.len())?;
        load.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: insns, license and log point to live memory of the stated
    // sizes for the whole call; on success BPF_PROG_LOAD returns a new fd.
    unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr, Size::PROG_LOAD) }
}

/// `BPF_PROG_TEST_RUN`: runs `prog` once on a packet made of `data`, with
/// `ctx` as its context's initial bytes (for a tc program, a
/// `struct __sk_buff` whose `cb` and a few other fields the kernel copies
/// in; empty for none). Returns the program's return value. Only tests run
/// programs on made-up packets.
#[cfg(test)]
pub fn prog_test_run(prog: BorrowedFd<'_>, data: &[u8], ctx: &[u8]) -> io::Result<u32> {
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let test = unsafe { &mut attr.test };
    test.prog_fd = prog.as_raw_fd() as u32;
    test.data_size_in = len_u32(data.len())?;
    test.data_in = data.as_ptr() as u64;
    test.ctx_size_in = len_u32(ctx.len())?;
    if !ctx.is_empty() {
        test.ctx_in = ctx.as_ptr() as u64;
    }
    // SAFETY: data and ctx outlive the call; no output buffer is given, so
    // the kernel writes only into attr (retval, duration).
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr, Size::TEST_RUN) }?;
    // SAFETY: the member filled above, which the kernel wrote retval into.
    Ok(unsafe { attr.test.retval })
}

/// An attr for `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` of `prog`
/// to `cnt` functions at `addrs`.
fn kprobe_multi_attr(prog: BorrowedFd<'_>, cnt: u32, addrs: u64) -> bpf_attr {
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    link.attach_type = AttachType::TraceKprobeMulti as u32;
    // SAFETY: as above, an arm of the zeroed member.
    let multi = unsafe { &mut link.__bindgen_anon_3.kprobe_multi };
    multi.cnt = cnt;
    multi.addrs = addrs;
    attr
}

/// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI`: attaches `prog` (loaded
/// with [`AttachType::TraceKprobeMulti`]) to the entry, or the return, of
/// the function at every address in `addrs` (from `/proc/kallsyms`) at
/// once. `cookies`, if not empty, has one value per function, which the
/// program reads with `bpf_get_attach_cookie`. One function the kernel
/// cannot trace fails the whole call. Closing the returned fd detaches.
pub fn link_create_kprobe_multi(
    prog: BorrowedFd<'_>,
    at: Probe,
    addrs: &[u64],
    cookies: &[u64],
) -> io::Result<OwnedFd> {
    let count = addrs.len();
    let mut attr = kprobe_multi_attr(prog, len_u32(count)?, addrs.as_ptr() as u64);
    // SAFETY: the arm kprobe_multi_attr filled.
    let multi = unsafe { &mut attr.link_create.__bindgen_anon_3.kprobe_multi };
    if at == Probe::Return {
        multi.flags = BPF_F_KPROBE_MULTI_RETURN;
    }
    if !cookies.is_empty() {
        if cookies.len() != count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one cookie per function",
            ));
        }
        multi.cookies = cookies.as_ptr() as u64;
    }
    // SAFETY: addrs and cookies live until the call returns; on success
    // BPF_LINK_CREATE returns a new fd.
    unsafe {
        bpf_fd(
            bpf_cmd::BPF_LINK_CREATE,
            &mut attr,
            Size::LINK_CREATE_KPROBE_MULTI,
        )
    }
}

/// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` and one address the
/// kernel cannot read (it lies in the kernel's half), to learn cheaply
/// whether kprobe-multi links exist: a kernel that has them (5.18+ with
/// fprobe) copies the address first and answers EFAULT, having looked up
/// and attached nothing. Returns the kernel's answer: never a link.
pub fn link_create_kprobe_multi_unreadable(prog: BorrowedFd<'_>) -> io::Error {
    let mut attr = kprobe_multi_attr(prog, 1, UNREADABLE);
    let size = Size::LINK_CREATE_KPROBE_MULTI;
    // SAFETY: the kernel only tries to read the unreadable address (and
    // fails); a link it might still return is closed at once.
    match unsafe { bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr, size) } {
        Ok(_link) => io::Error::other("the kernel read an unreadable address"),
        Err(err) => err,
    }
}

/// An address no process can read: the top of the kernel's half.
const UNREADABLE: u64 = !7;

/// An attr for `BPF_MAP_*_ELEM` on `map` with `key` and `value` (pointers).
fn map_elem_attr(map: BorrowedFd<'_>, key: u64, value: u64) -> bpf_attr {
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = key;
    elem.__bindgen_anon_1.value = value;
    attr
}

/// `BPF_MAP_UPDATE_ELEM`: sets `key` to `value` in the map (e.g. a perf
/// event array slot to a perf event fd).
pub fn map_update_elem(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = map_elem_attr(map, key.as_ptr() as u64, value.as_ptr() as u64);
    // SAFETY: key and value outlive the call; the command returns 0, no fd.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr, Size::MAP_ELEM) }.map(drop)
}

/// `BPF_MAP_LOOKUP_ELEM`: reads `key`'s value into `value` (which must be
/// the map's value size); `Ok(false)` when the map has no such key.
pub fn map_lookup_elem(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = map_elem_attr(map, key.as_ptr() as u64, value.as_mut_ptr() as u64);
    // SAFETY: key and value outlive the call and value has the map's value
    // size; the command returns 0, no fd.
    match unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr, Size::MAP_ELEM) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_FREEZE`: no more writes from userspace. A frozen read-only map
/// lets the verifier treat its values as constants. (Kernel 5.2.)
pub fn map_freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed();
    attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    // SAFETY: the attr holds no pointers; the command returns 0, no fd.
    unsafe { bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr, Size::MAP_FD) }.map(drop)
}

/// `BPF_RAW_TRACEPOINT_OPEN` without a name: attaches a tracing program
/// (fentry, fexit, tp_btf) to the function or tracepoint it was loaded for.
/// Closing the returned link fd detaches. (Kernel 5.5; `BPF_LINK_CREATE`
/// does the same from 5.11.)
pub fn raw_tracepoint_open(prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = zeroed();
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    let size = Size::RAW_TRACEPOINT_OPEN;
    // SAFETY: no pointers; on success the command returns a new link fd.
    unsafe { bpf_fd(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr, size) }
}

/// An attr for `BPF_*_GET_NEXT_ID` after `id`, or `BPF_*_GET_FD_BY_ID`
/// of `id`.
fn get_id_attr(id: u32) -> bpf_attr {
    let mut attr = zeroed();
    attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
    attr
}

/// `BPF_BTF_GET_NEXT_ID`: the id of the next BTF object the kernel holds
/// after `start` (vmlinux, modules, programs'), or `None` after the last.
pub fn btf_get_next_id(start: u32) -> io::Result<Option<u32>> {
    let mut attr = get_id_attr(start);
    // SAFETY: no pointers; the kernel writes next_id into attr.
    match unsafe { bpf(bpf_cmd::BPF_BTF_GET_NEXT_ID, &mut attr, Size::GET_ID) } {
        // SAFETY: the member filled above, which the kernel wrote into.
        Ok(_) => Ok(Some(unsafe { attr.__bindgen_anon_6.next_id })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `BPF_BTF_GET_FD_BY_ID`: opens BTF object `id`.
pub fn btf_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = get_id_attr(id);
    // SAFETY: no pointers; on success the command returns a new fd.
    unsafe { bpf_fd(bpf_cmd::BPF_BTF_GET_FD_BY_ID, &mut attr, Size::GET_ID) }
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a BTF object: its name (`vmlinux`, a
/// module's name, or empty for a program's BTF).
pub fn btf_name(btf: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = [0u8; 64];
    // SAFETY: plain integers: all zeros is a valid value.
    let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
    info.name = name.as_mut_ptr() as u64;
    info.name_len = name.len() as u32;
    let mut attr = zeroed();
    attr.info.bpf_fd = btf.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_btf_info>() as u32;
    attr.info.info = (&mut info as *mut bpf_btf_info) as u64;
    // SAFETY: info and name outlive the call, with the sizes stated.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr, Size::INFO) }?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A NUL-terminated object name, cut to what the kernel keeps.
fn obj_name(name: &str) -> [std::ffi::c_char; OBJ_NAME_LEN] {
    let mut out = [0; OBJ_NAME_LEN];
    let len = name.len().min(OBJ_NAME_LEN - 1);
    for (to, &from) in out.iter_mut().zip(&name.as_bytes()[..len]) {
        *to = from as std::ffi::c_char;
    }
    out
}

/// Calls bpf(2) with the first `size` bytes of `attr`.
///
/// # Safety
/// Every pointer in `attr` must be valid for the call.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr, size: usize) -> io::Result<RawFd> {
    assert!(size <= size_of::<bpf_attr>());
    syscall(cmd as u32, (attr as *mut bpf_attr).cast(), size)
}

/// Calls bpf(2) with `attr` and takes ownership of the returned fd.
///
/// # Safety
/// As [`bpf`], and `cmd` must return a new file descriptor on success.
unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr, size: usize) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from_raw_fd(bpf(cmd, attr, size)?))
}

#[cfg(not(test))]
unsafe fn syscall(cmd: u32, attr: *mut u8, size: usize) -> io::Result<RawFd> {
    kernel(cmd, attr, size)
}

/// bpf(2) itself.
///
/// # Safety
/// As [`bpf`].
unsafe fn kernel(cmd: u32, attr: *mut u8, size: usize) -> io::Result<RawFd> {
    let ret = libc::syscall(libc::SYS_bpf, cmd, attr, size);
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    RawFd::try_from(ret).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
unsafe fn syscall(cmd: u32, attr: *mut u8, size: usize) -> io::Result<RawFd> {
    if super::fake::kernel_in_use() {
        return kernel(cmd, attr, size);
    }
    super::fake::call(cmd, std::slice::from_raw_parts(attr, size))
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, ffi::CString, fs::File, os::fd::AsFd, rc::Rc};

    use ipft_filter::insn;

    use super::{super::fake::*, *};

    const BPF_PROG_LOAD: u32 = bpf_cmd::BPF_PROG_LOAD as u32;
    const BPF_PROG_TEST_RUN: u32 = bpf_cmd::BPF_PROG_TEST_RUN as u32;
    const BPF_LINK_CREATE: u32 = bpf_cmd::BPF_LINK_CREATE as u32;
    const BPF_MAP_FREEZE: u32 = bpf_cmd::BPF_MAP_FREEZE as u32;
    const BPF_BTF_GET_NEXT_ID: u32 = bpf_cmd::BPF_BTF_GET_NEXT_ID as u32;

    /// Each command's attr ends where include/uapi/linux/bpf.h puts the
    /// end of its last field ipft sets (x86_64): what the kernel is given.
    #[test]
    fn attrs_end_at_the_last_field_set() {
        assert_eq!(Size::PROG_LOAD, 120);
        assert_eq!(Size::TEST_RUN, 64);
        assert_eq!(Size::LINK_CREATE_KPROBE_MULTI, 48);
        assert_eq!(Size::MAP_ELEM, 32);
        assert_eq!(Size::MAP_FD, 4);
        assert_eq!(Size::RAW_TRACEPOINT_OPEN, 16);
        assert_eq!(Size::GET_ID, 12);
        assert_eq!(Size::INFO, 16);
        assert_eq!(size_of::<bpf_btf_info>(), 32);
    }

    /// The numbers bpf.h gives the program and attach types ipft uses.
    #[test]
    fn types_have_the_uapi_numbers() {
        let progs = [ProgType::Kprobe, ProgType::SchedCls, ProgType::Tracing];
        assert_eq!(progs.map(|p| p as u32), [2, 3, 26]);
        let attach = [
            AttachType::TraceRawTp,
            AttachType::TraceFentry,
            AttachType::TraceFexit,
            AttachType::TraceKprobeMulti,
        ];
        assert_eq!(attach.map(|a| a as u32), [23, 24, 25, 42]);
    }

    #[test]
    fn kprobe_multi_probe_reads_one_unreadable_address() {
        let prog = File::open("/dev/null").unwrap();
        answer(|_, _| Err(io::Error::from_raw_os_error(libc::EFAULT)));
        let err = link_create_kprobe_multi_unreadable(prog.as_fd());
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
        let call = &calls()[0];
        assert_eq!(call.cmd, BPF_LINK_CREATE);
        assert_eq!(u32_at(&call.attr, 8), AttachType::TraceKprobeMulti as u32);
        assert_eq!(u32_at(&call.attr, 20), 1);
        assert_eq!(u64_at(&call.attr, 24), 0, "no symbols");
        assert_eq!(u64_at(&call.attr, 32), UNREADABLE);
    }

    #[test]
    fn freeze_names_the_map() {
        let map = File::open("/dev/null").unwrap();
        answer(|_, _| Ok(()));
        map_freeze(map.as_fd()).unwrap();
        let call = &calls()[0];
        assert_eq!(call.cmd, BPF_MAP_FREEZE);
        assert_eq!(u32_at(&call.attr, 0), map.as_raw_fd() as u32);
    }

    #[test]
    fn tracing_load_sets_the_btf_target() {
        let license = CString::new("GPL").unwrap();
        let insns = [insn::mov64_imm(0, 0), insn::exit()];
        let obj = File::open("/dev/null").unwrap();
        answer(|_, _| Ok(()));
        let prog = Program {
            prog_type: ProgType::Tracing,
            expected_attach_type: AttachType::TraceFentry,
            name: "fentry_skb_0",
            insns: &insns,
            license: &license,
            attach_btf_id: 4242,
            attach_btf_obj: Some(obj.as_fd()),
        };
        prog_load(&prog, &mut []).unwrap();
        let call = &calls()[0];
        assert_eq!(call.cmd, BPF_PROG_LOAD);
        assert_eq!(u32_at(&call.attr, 0), ProgType::Tracing as u32);
        assert_eq!(u32_at(&call.attr, 68), AttachType::TraceFentry as u32);
        assert_eq!(u32_at(&call.attr, 108), 4242);
        assert_eq!(u32_at(&call.attr, 112), obj.as_raw_fd() as u32);
    }

    #[test]
    fn btf_next_id_ends_at_enoent() {
        answer(|_, attr| match u32_at(attr, 0) {
            0 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        });
        // The fake does not write next_id: the kernel would.
        assert_eq!(btf_get_next_id(0).unwrap(), Some(0));
        assert_eq!(btf_get_next_id(7).unwrap(), None);
        assert_eq!(calls()[1].cmd, BPF_BTF_GET_NEXT_ID);
    }

    #[test]
    fn test_run_passes_the_packet_and_context() {
        let seen = Rc::new(RefCell::new((Vec::new(), Vec::new())));
        let record = Rc::clone(&seen);
        // SAFETY: the handler runs during the call, while both buffers live.
        answer(move |_, attr| {
            let read = |len: usize, at: usize| match len {
                0 => Vec::new(),
                _ => unsafe { std::slice::from_raw_parts(u64_at(attr, at) as *const u8, len) }
                    .to_vec(),
            };
            let (data, ctx) = (u32_at(attr, 8) as usize, u32_at(attr, 40) as usize);
            *record.borrow_mut() = (read(data, 16), read(ctx, 48));
            Ok(())
        });
        let prog = File::open("/dev/null").unwrap();
        let retval = prog_test_run(prog.as_fd(), b"packet", &[1, 2]).unwrap();
        // The fake writes no retval: the kernel would.
        assert_eq!(retval, 0);
        let call = &calls()[0];
        assert_eq!(call.cmd, BPF_PROG_TEST_RUN);
        assert_eq!(call.attr.len(), 64);
        assert_eq!(u32_at(&call.attr, 0), prog.as_raw_fd() as u32);
        assert_eq!(u64_at(&call.attr, 24), 0, "no output buffer");
        assert_eq!(*seen.borrow(), (b"packet".to_vec(), vec![1, 2]));
        prog_test_run(prog.as_fd(), b"p", &[]).unwrap();
        assert_eq!(u64_at(&calls()[1].attr, 48), 0, "no context");
    }

    #[test]
    fn prog_load_encodes_the_program() {
        answer(|_, _| Ok(()));
        let insns = [insn::mov64_imm(0, 0), insn::exit()];
        let license = CString::new("GPL").unwrap();
        let prog = Program {
            prog_type: ProgType::Kprobe,
            expected_attach_type: AttachType::TraceKprobeMulti,
            name: "a_name_longer_than_fifteen",
            insns: &insns,
            license: &license,
            attach_btf_id: 0,
            attach_btf_obj: None,
        };
        prog_load(&prog, &mut []).unwrap();
        let calls = calls();
        let attr = &calls[0].attr;
        assert_eq!(calls[0].cmd, 5);
        assert_eq!(attr.len(), 120);
        assert_eq!(u32_at(attr, 0), 2);
        assert_eq!(u32_at(attr, 4), 2);
        assert_eq!(u64_at(attr, 8), insns.as_ptr() as u64);
        assert_eq!(u64_at(attr, 16), license.as_ptr() as u64);
        assert_eq!(
            (u32_at(attr, 24), u32_at(attr, 28), u64_at(attr, 32)),
            (0, 0, 0)
        );
        assert_eq!(&attr[48..64], b"a_name_longer_t\0");
        assert_eq!(u32_at(attr, 68), 42);
    }

    #[test]
    fn prog_load_asks_for_the_verifier_log() {
        answer(|_, _| Err(io::Error::from_raw_os_error(libc::EACCES)));
        let mut log = vec![0u8; 4096];
        let license = CString::new("GPL").unwrap();
        let prog = Program {
            prog_type: ProgType::Kprobe,
            expected_attach_type: AttachType::TraceKprobeMulti,
            name: "p",
            insns: &[insn::exit()],
            license: &license,
            attach_btf_id: 0,
            attach_btf_obj: None,
        };
        let err = prog_load(&prog, &mut log).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        let attr = &calls()[0].attr;
        assert_eq!(u32_at(attr, 24), 1);
        assert_eq!(u32_at(attr, 28), 4096);
        assert_eq!(u64_at(attr, 32), log.as_ptr() as u64);
    }

    #[test]
    fn link_create_encodes_addresses() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let record = Rc::clone(&seen);
        // SAFETY: the handler runs during the call, while `addrs` is alive.
        answer(move |_, attr| {
            *record.borrow_mut() = unsafe { kprobe_multi_addrs(attr) };
            Ok(())
        });
        let prog = File::open("/dev/null").unwrap();
        let addrs = [0xffff_ffff_8100_0000, 0xffff_ffff_8100_0040];
        link_create_kprobe_multi(prog.as_fd(), Probe::Entry, &addrs, &[]).unwrap();
        let attr = &calls()[0].attr;
        assert_eq!(calls()[0].cmd, 28);
        assert_eq!(attr.len(), 48);
        assert_eq!(u32_at(attr, 0), prog.as_raw_fd() as u32);
        assert_eq!(
            (u32_at(attr, 4), u32_at(attr, 8), u32_at(attr, 12)),
            (0, 42, 0)
        );
        assert_eq!((u32_at(attr, 16), u32_at(attr, 20)), (0, 2));
        assert_eq!((u64_at(attr, 24), u64_at(attr, 40)), (0, 0));
        assert_eq!(*seen.borrow(), addrs);
    }

    #[test]
    fn return_links_set_the_return_flag() {
        answer(|_, _| Ok(()));
        let prog = File::open("/dev/null").unwrap();
        link_create_kprobe_multi(prog.as_fd(), Probe::Return, &[0x10], &[]).unwrap();
        assert_eq!(u32_at(&calls()[0].attr, 16), 1);
    }

    #[test]
    fn kernel_errors_come_back_as_io_errors() {
        answer(|_, _| Err(io::Error::from_raw_os_error(libc::EINVAL)));
        let prog = File::open("/dev/null").unwrap();
        let err = link_create_kprobe_multi(prog.as_fd(), Probe::Entry, &[1], &[]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn link_create_passes_one_cookie_per_function() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let record = Rc::clone(&seen);
        answer(move |_, attr| {
            let (cnt, cookies) = (u32_at(attr, 20) as usize, u64_at(attr, 40));
            // SAFETY: the handler runs during the call, while the cookies are alive.
            *record.borrow_mut() =
                unsafe { std::slice::from_raw_parts(cookies as *const u64, cnt) }.to_vec();
            Ok(())
        });
        let prog = File::open("/dev/null").unwrap();
        let addrs = [0x10, 0x20];
        link_create_kprobe_multi(prog.as_fd(), Probe::Entry, &addrs, &[7, 0x102]).unwrap();
        assert_eq!(*seen.borrow(), [7, 0x102]);
        let err = link_create_kprobe_multi(prog.as_fd(), Probe::Entry, &addrs, &[7]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            calls().len(),
            1,
            "a bad cookie count never reaches the kernel"
        );
    }
}
