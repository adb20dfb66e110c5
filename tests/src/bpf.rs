//! Just enough of the bpf() syscall to ask the kernel what it allows,
//! without any of ipft's code: load a program that returns 0 (of any type,
//! maybe aimed at a kernel function by its BTF id), and attach one to a
//! function with a kprobe-multi link. Layouts from include/uapi/linux/bpf.h.
use std::{
    ffi::{c_char, CString},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

pub const PROG_TYPE_SOCKET_FILTER: u32 = 1;
pub const PROG_TYPE_KPROBE: u32 = 2;
pub const PROG_TYPE_TRACING: u32 = 26;
pub const ATTACH_TRACE_FENTRY: u32 = 24;
pub const ATTACH_TRACE_KPROBE_MULTI: u32 = 42;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `attach_btf_obj_fd`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
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
    /// `core_relo_cnt` on newer kernels: must be 0.
    padding: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE of a kprobe-multi link.
#[repr(C)]
#[derive(Default)]
struct KprobeMultiLink {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    kprobe_multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

/// `r0 = 0; exit`: the smallest program every type accepts.
const RETURN_ZERO: [u64; 2] = [0xb7, 0x95];

/// What to load: a program type, and for tracing programs the attach
/// type and the BTF id of the kernel function it is for.
#[derive(Clone, Copy, Default)]
pub struct Load {
    pub prog_type: u32,
    pub attach_type: u32,
    pub btf_id: u32,
}

/// Loads [`RETURN_ZERO`] as `load` says; the kernel's errno if it refuses.
pub fn load(load: Load) -> Result<OwnedFd, i32> {
    let license = CString::new("GPL").unwrap();
    let attr = ProgLoad {
        prog_type: load.prog_type,
        insn_cnt: RETURN_ZERO.len() as u32,
        insns: RETURN_ZERO.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: load.attach_type,
        attach_btf_id: load.btf_id,
        ..ProgLoad::default()
    };
    // SAFETY: `attr` and what it points to (program, license) outlive the
    // call; the kernel reads `size_of` bytes of it.
    let fd = unsafe {
        bpf(
            BPF_PROG_LOAD,
            &attr as *const ProgLoad as *const u8,
            size(&attr),
        )
    };
    owned(fd)
}

/// Attaches `prog` (a kprobe-multi program) to the kernel function `name`;
/// the link stays until the returned fd is closed.
pub fn kprobe_multi(prog: &OwnedFd, name: &str) -> Result<OwnedFd, i32> {
    let name = CString::new(name).unwrap();
    let syms: [*const c_char; 1] = [name.as_ptr()];
    let attr = KprobeMultiLink {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: ATTACH_TRACE_KPROBE_MULTI,
        cnt: 1,
        syms: syms.as_ptr() as u64,
        ..KprobeMultiLink::default()
    };
    // SAFETY: as in `load`: `attr`, `syms` and `name` outlive the call.
    let fd = unsafe {
        bpf(
            BPF_LINK_CREATE,
            &attr as *const KprobeMultiLink as *const u8,
            size(&attr),
        )
    };
    owned(fd)
}

fn size<T>(_: &T) -> u32 {
    std::mem::size_of::<T>() as u32
}

/// # Safety
/// `attr` must point to `size` readable bytes laid out for `cmd`.
unsafe fn bpf(cmd: libc::c_long, attr: *const u8, size: u32) -> libc::c_long {
    libc::syscall(libc::SYS_bpf, cmd, attr, size)
}

/// The fd a bpf() command returned, or its errno.
fn owned(fd: libc::c_long) -> Result<OwnedFd, i32> {
    if fd < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets bpf.h gives these fields.
    #[test]
    fn layouts_match_the_kernel_header() {
        assert_eq!(std::mem::size_of::<ProgLoad>(), 120);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoad, attach_btf_id), 108);
        assert_eq!(std::mem::size_of::<KprobeMultiLink>(), 48);
        assert_eq!(std::mem::offset_of!(KprobeMultiLink, syms), 24);
    }
}
