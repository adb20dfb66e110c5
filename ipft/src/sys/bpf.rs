//! Typed wrappers for the bpf(2) commands that aya 0.14 does not offer, or
//! offers only one program at a time: loading a program with an expected
//! attach type and BTF target ([`prog_load`]), creating a kprobe-multi link
//! ([`link_create_kprobe_multi`]), attaching a tracing program
//! ([`raw_tracepoint_open`]), and finding the kernel's module BTF objects
//! ([`btf_get_next_id`], [`btf_get_fd_by_id`], [`btf_name`]), and running a
//! program once on a packet ([`prog_test_run`]: the `-f` filter's tests).
//!
//! Each command has its own `#[repr(C)]` attr struct: that command's member
//! of the kernel's `union bpf_attr` (include/uapi/linux/bpf.h), cut after
//! the last field ipft sets. The kernel accepts a shorter attr and reads the
//! missing tail as zeros. Each wrapper fills its struct, makes the call, and
//! returns the new file descriptor or the kernel's error. Under `cfg(test)`
//! the call goes to a per-thread [`fake`] that records the attr bytes, so the
//! encoding is tested without a kernel; a test that needs the kernel itself
//! says so with [`fake::use_the_kernel`].
use std::{
    ffi::CStr,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use ipft_filter::insn::Insn;

use super::perf::Probe;

/// `enum bpf_cmd` values.
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
const BPF_BTF_GET_FD_BY_ID: u32 = 19;
const BPF_MAP_FREEZE: u32 = 22;
const BPF_BTF_GET_NEXT_ID: u32 = 23;
const BPF_LINK_CREATE: u32 = 28;

/// `BPF_OBJ_NAME_LEN`: program names are cut to 15 bytes plus a NUL.
const OBJ_NAME_LEN: usize = 16;

/// `enum bpf_prog_type`: the program types ipft loads itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    Kprobe = 2,
    /// A tc classifier: the `-f` filter is checked and tested inside one,
    /// since the kernel runs it on a packet with `BPF_PROG_TEST_RUN`.
    SchedCls = 3,
    Tracing = 26,
}

/// `enum bpf_attach_type`: the attach types ipft uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum AttachType {
    /// None expected (kprobes attached through perf events).
    None = 0,
    /// A BTF tracepoint (`tp_btf`).
    TraceRawTp = 23,
    TraceFentry = 24,
    TraceFexit = 25,
    TraceKprobeMulti = 42,
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

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to
/// `attach_btf_obj_fd` (no program BTF, func_info or line_info).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    /// Named, so that it is zero: Rust leaves padding bytes undefined, and
    /// the kernel refuses non-zero bytes it does not know.
    core_relo_cnt: u32,
}

/// `BPF_PROG_LOAD`: loads `prog` and returns its fd. With a non-empty `log`
/// (the kernel wants at least 128 bytes) the verifier writes its log there
/// (level 1); pass an empty one for a fast load.
pub fn prog_load(prog: &Program<'_>, log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: prog.prog_type as u32,
        insn_cnt: len_u32(prog.insns.len())?,
        insns: prog.insns.as_ptr() as u64,
        license: prog.license.as_ptr() as u64,
        prog_name: obj_name(prog.name),
        expected_attach_type: prog.expected_attach_type as u32,
        attach_btf_id: prog.attach_btf_id,
        attach_btf_obj_fd: prog.attach_btf_obj.map_or(0, |fd| fd.as_raw_fd() as u32),
        ..ProgLoadAttr::default()
    };
    if !log.is_empty() {
        attr.log_level = 1;
        attr.log_size = len_u32(log.len())?;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: insns, license and log point to live memory of the stated
    // sizes for the whole call; on success BPF_PROG_LOAD returns a new fd.
    unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) }
}

/// The `BPF_PROG_TEST_RUN` member of `union bpf_attr`, up to `ctx_out`.
#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

/// `BPF_PROG_TEST_RUN`: runs `prog` once on a packet made of `data`, with
/// `ctx` as its context's initial bytes (for a tc program, a
/// `struct __sk_buff` whose `cb` and a few other fields the kernel copies
/// in; empty for none). Returns the program's return value. Only tests run
/// programs on made-up packets.
#[cfg(test)]
pub fn prog_test_run(prog: BorrowedFd<'_>, data: &[u8], ctx: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len_u32(data.len())?,
        data_in: data.as_ptr() as u64,
        ctx_size_in: len_u32(ctx.len())?,
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        ..TestRunAttr::default()
    };
    // SAFETY: data and ctx outlive the call; no output buffer is given, so
    // the kernel writes only into attr (retval, duration).
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}

/// The `BPF_LINK_CREATE` member of `union bpf_attr`, with its
/// `kprobe_multi` arm.
#[repr(C)]
#[derive(Default)]
struct LinkCreateKprobeMultiAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    kprobe_multi: KprobeMultiAttr,
}

#[repr(C)]
#[derive(Default)]
struct KprobeMultiAttr {
    /// [`BPF_F_KPROBE_MULTI_RETURN`] for return probes.
    flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

/// `kprobe_multi.flags`: the link runs its program as each function
/// returns (5.18+, as kprobe-multi links).
const BPF_F_KPROBE_MULTI_RETURN: u32 = 1;

/// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI`: attaches `prog` (maps
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
    let mut attr = LinkCreateKprobeMultiAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: AttachType::TraceKprobeMulti as u32,
        ..LinkCreateKprobeMultiAttr::default()
    };
    if at == Probe::Return {
        attr.kprobe_multi.flags = BPF_F_KPROBE_MULTI_RETURN;
    }
    attr.kprobe_multi.addrs = addrs.as_ptr() as u64;
    let count = addrs.len();
    attr.kprobe_multi.cnt = len_u32(count)?;
    if !cookies.is_empty() {
        if cookies.len() != count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one cookie per function",
            ));
        }
        attr.kprobe_multi.cookies = cookies.as_ptr() as u64;
    }
    // SAFETY: addrs and cookies live until the call returns; on success
    // BPF_LINK_CREATE returns a new fd.
    unsafe { bpf_fd(BPF_LINK_CREATE, &mut attr) }
}

/// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` and one address the
/// kernel cannot read (it lies in the kernel's half), to learn cheaply
/// whether kprobe-multi links exist: a kernel that has them (5.18+ with
/// fprobe) copies the address first and answers EFAULT, having looked up
/// and attached nothing. Returns the kernel's answer: never a link.
pub fn link_create_kprobe_multi_unreadable(prog: BorrowedFd<'_>) -> io::Error {
    let mut attr = LinkCreateKprobeMultiAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: AttachType::TraceKprobeMulti as u32,
        ..LinkCreateKprobeMultiAttr::default()
    };
    attr.kprobe_multi.cnt = 1;
    attr.kprobe_multi.addrs = UNREADABLE;
    // SAFETY: the kernel only tries to read the unreadable address (and
    // fails); a link it might still return is closed at once.
    match unsafe { bpf_fd(BPF_LINK_CREATE, &mut attr) } {
        Ok(_link) => io::Error::other("the kernel read an unreadable address"),
        Err(err) => err,
    }
}

/// An address no process can read: the top of the kernel's half.
const UNREADABLE: u64 = !7;

/// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_MAP_UPDATE_ELEM`: sets `key` to `value` in the map (e.g. a perf
/// event array slot to a perf event fd).
pub fn map_update_elem(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..MapElemAttr::default()
    };
    // SAFETY: key and value outlive the call; the command returns 0, no fd.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_MAP_LOOKUP_ELEM`: reads `key`'s value into `value` (which must be
/// the map's value size); `Ok(false)` when the map has no such key.
pub fn map_lookup_elem(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..MapElemAttr::default()
    };
    // SAFETY: key and value outlive the call and value has the map's value
    // size; the command returns 0, no fd.
    match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The `BPF_MAP_FREEZE` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapFdAttr {
    map_fd: u32,
}

/// `BPF_MAP_FREEZE`: no more writes from userspace. A frozen read-only map
/// lets the verifier treat its values as constants. (Kernel 5.2.)
pub fn map_freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = MapFdAttr {
        map_fd: map.as_raw_fd() as u32,
    };
    // SAFETY: the attr holds no pointers; the command returns 0, no fd.
    unsafe { bpf(BPF_MAP_FREEZE, &mut attr) }.map(drop)
}

/// The `BPF_RAW_TRACEPOINT_OPEN` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    /// Zero padding: kernels before 6.10 refuse a non-zero tail.
    _pad: u32,
}

/// `BPF_RAW_TRACEPOINT_OPEN` without a name: attaches a tracing program
/// (fentry, fexit, tp_btf) to the function or tracepoint it was maps for. Closing the returned
/// link fd detaches. (Kernel 5.5; `BPF_LINK_CREATE` does the same from 5.11.)
pub fn raw_tracepoint_open(prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = RawTracepointOpenAttr {
        prog_fd: prog.as_raw_fd() as u32,
        ..RawTracepointOpenAttr::default()
    };
    // SAFETY: no pointers; on success the command returns a new link fd.
    unsafe { bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &mut attr) }
}

/// The `BPF_*_GET_NEXT_ID` / `BPF_*_GET_FD_BY_ID` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    /// `start_id`, or the id to open.
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `BPF_BTF_GET_NEXT_ID`: the id of the next BTF object the kernel holds
/// after `start` (vmlinux, modules, programs'), or `None` after the last.
pub fn btf_get_next_id(start: u32) -> io::Result<Option<u32>> {
    let mut attr = GetIdAttr {
        id: start,
        ..GetIdAttr::default()
    };
    // SAFETY: no pointers; the kernel writes next_id into attr.
    match unsafe { bpf(BPF_BTF_GET_NEXT_ID, &mut attr) } {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `BPF_BTF_GET_FD_BY_ID`: opens BTF object `id`.
pub fn btf_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetIdAttr {
        id,
        ..GetIdAttr::default()
    };
    // SAFETY: no pointers; on success the command returns a new fd.
    unsafe { bpf_fd(BPF_BTF_GET_FD_BY_ID, &mut attr) }
}

/// The `BPF_OBJ_GET_INFO_BY_FD` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a BTF object: its name (`vmlinux`, a
/// module's name, or empty for a program's BTF).
pub fn btf_name(btf: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = [0u8; 64];
    let mut info = BtfInfo {
        name: name.as_mut_ptr() as u64,
        name_len: name.len() as u32,
        ..BtfInfo::default()
    };
    let mut attr = InfoAttr {
        bpf_fd: btf.as_raw_fd() as u32,
        info_len: std::mem::size_of::<BtfInfo>() as u32,
        info: (&mut info as *mut BtfInfo) as u64,
    };
    // SAFETY: info and name outlive the call, with the sizes stated.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A NUL-terminated object name, cut to what the kernel keeps.
fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    let len = name.len().min(OBJ_NAME_LEN - 1);
    out[..len].copy_from_slice(&name.as_bytes()[..len]);
    out
}

/// Calls bpf(2) with `attr`, whose size is the attr size the kernel reads.
///
/// # Safety
/// Every pointer in `attr` must be valid for the call.
unsafe fn bpf<A>(cmd: u32, attr: &mut A) -> io::Result<RawFd> {
    syscall(cmd, (attr as *mut A).cast(), std::mem::size_of::<A>())
}

/// Calls bpf(2) with `attr` and takes ownership of the returned fd.
///
/// # Safety
/// As [`bpf`], and `cmd` must return a new file descriptor on success.
unsafe fn bpf_fd<A>(cmd: u32, attr: &mut A) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from_raw_fd(bpf(cmd, attr)?))
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
    if fake::kernel_in_use() {
        return kernel(cmd, attr, size);
    }
    fake::call(cmd, std::slice::from_raw_parts(attr, size))
}

/// The test stand-in for bpf(2): records each call's command and attr bytes
/// and answers with a handler the test sets (per thread, so tests running
/// in parallel do not see each other's calls).
#[cfg(test)]
pub mod fake {
    use std::{
        cell::{Cell, RefCell},
        fs::File,
        io,
        os::fd::IntoRawFd,
        os::fd::RawFd,
    };

    /// One recorded bpf(2) call.
    #[derive(Clone, Debug)]
    pub struct Call {
        pub cmd: u32,
        pub attr: Vec<u8>,
    }

    type Handler = Box<dyn FnMut(u32, &[u8]) -> io::Result<()>>;

    thread_local! {
        static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
        static KERNEL: Cell<bool> = const { Cell::new(false) };
    }

    /// This thread's calls go to bpf(2) itself, unrecorded: for the tests
    /// whose point is what the kernel does (the `-f` filter run on packets).
    pub fn use_the_kernel() {
        KERNEL.with(|k| k.set(true));
    }

    pub(super) fn kernel_in_use() -> bool {
        KERNEL.with(Cell::get)
    }

    /// Answers this thread's next calls with `handler`: `Ok` gives the
    /// caller a real (throwaway) fd, `Err` is returned as the kernel's error.
    /// The handler may read memory the attr points to: it runs during the call.
    pub fn answer(handler: impl FnMut(u32, &[u8]) -> io::Result<()> + 'static) {
        HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
        CALLS.with(|c| c.borrow_mut().clear());
    }

    /// The calls made on this thread since the last [`answer`].
    pub fn calls() -> Vec<Call> {
        CALLS.with(|c| c.borrow().clone())
    }

    pub(super) fn call(cmd: u32, attr: &[u8]) -> io::Result<RawFd> {
        CALLS.with(|c| {
            c.borrow_mut().push(Call {
                cmd,
                attr: attr.to_vec(),
            })
        });
        HANDLER.with(|h| match h.borrow_mut().as_mut() {
            Some(handler) => handler(cmd, attr),
            None => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
        })?;
        Ok(File::open("/dev/null")?.into_raw_fd())
    }

    /// Little-endian field readers for the attr bytes.
    pub fn u32_at(attr: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(attr[offset..offset + 4].try_into().unwrap())
    }

    pub fn u64_at(attr: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(attr[offset..offset + 8].try_into().unwrap())
    }

    /// The addresses a `BPF_LINK_CREATE` kprobe-multi attr points to.
    ///
    /// # Safety
    /// Only inside a handler, while the caller's arrays are alive.
    pub unsafe fn kprobe_multi_addrs(attr: &[u8]) -> Vec<u64> {
        let (cnt, addrs) = (u32_at(attr, 20) as usize, u64_at(attr, 32));
        if addrs == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(addrs as *const u64, cnt).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, ffi::CString, fs::File, mem::offset_of, os::fd::AsFd, rc::Rc};

    use aya_obj::generated as uapi;
    use ipft_filter::insn;

    use super::{fake::*, *};

    #[test]
    fn constants_match_the_uapi() {
        assert_eq!(BPF_PROG_LOAD, uapi::bpf_cmd::BPF_PROG_LOAD as u32);
        assert_eq!(BPF_LINK_CREATE, uapi::bpf_cmd::BPF_LINK_CREATE as u32);
        assert_eq!(
            ProgType::Kprobe as u32,
            uapi::bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32
        );
        assert_eq!(
            AttachType::TraceKprobeMulti as u32,
            uapi::bpf_attach_type::BPF_TRACE_KPROBE_MULTI as u32
        );
        assert_eq!(
            ProgType::Tracing as u32,
            uapi::bpf_prog_type::BPF_PROG_TYPE_TRACING as u32
        );
        assert_eq!(
            AttachType::TraceFentry as u32,
            uapi::bpf_attach_type::BPF_TRACE_FENTRY as u32
        );
        assert_eq!(
            AttachType::TraceFexit as u32,
            uapi::bpf_attach_type::BPF_TRACE_FEXIT as u32
        );
        assert_eq!(
            AttachType::TraceRawTp as u32,
            uapi::bpf_attach_type::BPF_TRACE_RAW_TP as u32
        );
        assert_eq!(
            ProgType::SchedCls as u32,
            uapi::bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32
        );
        assert_eq!(BPF_F_KPROBE_MULTI_RETURN, uapi::BPF_F_KPROBE_MULTI_RETURN);
        use uapi::bpf_cmd as cmd;
        assert_eq!(BPF_PROG_TEST_RUN, cmd::BPF_PROG_TEST_RUN as u32);
        assert_eq!(BPF_MAP_UPDATE_ELEM, cmd::BPF_MAP_UPDATE_ELEM as u32);
        assert_eq!(BPF_MAP_FREEZE, cmd::BPF_MAP_FREEZE as u32);
        assert_eq!(BPF_OBJ_GET_INFO_BY_FD, cmd::BPF_OBJ_GET_INFO_BY_FD as u32);
        assert_eq!(BPF_RAW_TRACEPOINT_OPEN, cmd::BPF_RAW_TRACEPOINT_OPEN as u32);
        assert_eq!(BPF_BTF_GET_FD_BY_ID, cmd::BPF_BTF_GET_FD_BY_ID as u32);
        assert_eq!(BPF_BTF_GET_NEXT_ID, cmd::BPF_BTF_GET_NEXT_ID as u32);
        assert_eq!(
            std::mem::size_of::<BtfInfo>(),
            std::mem::size_of::<uapi::bpf_btf_info>()
        );
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

    /// Offsets from include/uapi/linux/bpf.h (`union bpf_attr`, x86_64).
    #[test]
    fn prog_load_attr_has_the_uapi_layout() {
        assert_eq!(offset_of!(ProgLoadAttr, prog_type), 0);
        assert_eq!(offset_of!(ProgLoadAttr, insn_cnt), 4);
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(offset_of!(ProgLoadAttr, log_size), 28);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(offset_of!(ProgLoadAttr, prog_flags), 44);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_ifindex), 64);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoadAttr, prog_btf_fd), 72);
        assert_eq!(offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(offset_of!(ProgLoadAttr, line_info), 96);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_obj_fd), 112);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 120);
    }

    #[test]
    fn test_run_attr_has_the_uapi_layout() {
        type A = TestRunAttr;
        assert_eq!(offset_of!(A, prog_fd), 0);
        assert_eq!(offset_of!(A, retval), 4);
        assert_eq!(offset_of!(A, data_size_in), 8);
        assert_eq!(offset_of!(A, data_in), 16);
        assert_eq!(offset_of!(A, data_out), 24);
        assert_eq!(offset_of!(A, repeat), 32);
        assert_eq!(offset_of!(A, ctx_size_in), 40);
        assert_eq!(offset_of!(A, ctx_in), 48);
        assert_eq!(offset_of!(A, ctx_out), 56);
        assert_eq!(std::mem::size_of::<A>(), 64);
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
    fn link_create_attr_has_the_uapi_layout() {
        type A = LinkCreateKprobeMultiAttr;
        assert_eq!(offset_of!(A, prog_fd), 0);
        assert_eq!(offset_of!(A, target_fd), 4);
        assert_eq!(offset_of!(A, attach_type), 8);
        assert_eq!(offset_of!(A, flags), 12);
        assert_eq!(
            offset_of!(A, kprobe_multi) + offset_of!(KprobeMultiAttr, flags),
            16
        );
        assert_eq!(
            offset_of!(A, kprobe_multi) + offset_of!(KprobeMultiAttr, cnt),
            20
        );
        assert_eq!(
            offset_of!(A, kprobe_multi) + offset_of!(KprobeMultiAttr, syms),
            24
        );
        assert_eq!(
            offset_of!(A, kprobe_multi) + offset_of!(KprobeMultiAttr, addrs),
            32
        );
        assert_eq!(
            offset_of!(A, kprobe_multi) + offset_of!(KprobeMultiAttr, cookies),
            40
        );
        assert_eq!(std::mem::size_of::<A>(), 48);
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
