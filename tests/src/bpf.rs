//! Just enough of the bpf() syscall to ask the kernel what it allows,
//! without any of ipft's code: load a program that returns 0 (of any type,
//! maybe aimed at a kernel function by its BTF id), and attach one to a
//! function with a kprobe-multi link. The attr and the numbers are
//! include/uapi/linux/bpf.h's, from aya-obj's bindings.
use std::{
    ffi::{c_char, CString},
    io,
    mem::offset_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

pub const PROG_TYPE_SOCKET_FILTER: u32 = bpf_prog_type::BPF_PROG_TYPE_SOCKET_FILTER as u32;
pub const PROG_TYPE_KPROBE: u32 = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
pub const PROG_TYPE_TRACING: u32 = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
pub const ATTACH_TRACE_FENTRY: u32 = bpf_attach_type::BPF_TRACE_FENTRY as u32;
pub const ATTACH_TRACE_KPROBE_MULTI: u32 = bpf_attach_type::BPF_TRACE_KPROBE_MULTI as u32;

/// The attr's bytes BPF_PROG_LOAD is given: up to `core_relo_cnt`, which
/// newer kernels read and which must be 0.
const PROG_LOAD_SIZE: usize = offset_of!(bpf_attr, __bindgen_anon_3.core_relo_cnt) + 4;
/// The attr's bytes a kprobe-multi BPF_LINK_CREATE is given: up to the
/// link's `cookies`.
const KPROBE_MULTI_SIZE: usize =
    offset_of!(bpf_attr, link_create.__bindgen_anon_3.kprobe_multi.cookies) + 8;

/// An attr of zeros, whose members the calls fill.
fn zeroed() -> bpf_attr {
    // SAFETY: bpf_attr is a union of structs of plain integers: all zeros
    // is a valid value of each member.
    unsafe { std::mem::zeroed() }
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
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`).
    let prog = unsafe { &mut attr.__bindgen_anon_3 };
    prog.prog_type = load.prog_type;
    prog.insn_cnt = RETURN_ZERO.len() as u32;
    prog.insns = RETURN_ZERO.as_ptr() as u64;
    prog.license = license.as_ptr() as u64;
    prog.expected_attach_type = load.attach_type;
    prog.attach_btf_id = load.btf_id;
    // SAFETY: `attr` and what it points to (program, license) outlive the
    // call; the kernel reads its first PROG_LOAD_SIZE bytes.
    let fd = unsafe { bpf(bpf_cmd::BPF_PROG_LOAD, &attr, PROG_LOAD_SIZE) };
    owned(fd)
}

/// Attaches `prog` (a kprobe-multi program) to the kernel function `name`;
/// the link stays until the returned fd is closed.
pub fn kprobe_multi(prog: &OwnedFd, name: &str) -> Result<OwnedFd, i32> {
    let name = CString::new(name).unwrap();
    let syms: [*const c_char; 1] = [name.as_ptr()];
    let mut attr = zeroed();
    // SAFETY: a member of a zeroed attr (see `zeroed`), and an arm of it.
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    link.attach_type = ATTACH_TRACE_KPROBE_MULTI;
    let multi = unsafe { &mut link.__bindgen_anon_3.kprobe_multi };
    multi.cnt = 1;
    multi.syms = syms.as_ptr() as u64;
    // SAFETY: as in `load`: `attr`, `syms` and `name` outlive the call.
    let fd = unsafe { bpf(bpf_cmd::BPF_LINK_CREATE, &attr, KPROBE_MULTI_SIZE) };
    owned(fd)
}

/// # Safety
/// Every pointer in `attr`'s first `size` bytes must be valid for `cmd`.
unsafe fn bpf(cmd: bpf_cmd, attr: &bpf_attr, size: usize) -> libc::c_long {
    libc::syscall(libc::SYS_bpf, cmd as u32, attr as *const bpf_attr, size)
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

    /// The ends bpf.h gives these members' last fields (x86_64).
    #[test]
    fn attrs_end_where_the_kernel_header_says() {
        assert_eq!(PROG_LOAD_SIZE, 120);
        assert_eq!(KPROBE_MULTI_SIZE, 48);
    }
}
