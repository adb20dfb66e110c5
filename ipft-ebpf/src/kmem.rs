//! Reading kernel memory: with `bpf_probe_read_kernel`, or with plain loads
//! through a `bpf_rdonly_cast` pointer where the kernel has the kfunc.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use ipft_common::KFUNC_RDONLY_CAST;

#[inline(always)]
pub(crate) fn read<T>(addr: u64) -> T
where
    T: Default,
{
    unsafe { bpf_probe_read_kernel(addr as *const T) }.unwrap_or_default()
}

/// `bpf_rdonly_cast(obj, btf_id)`: `obj` as a read-only pointer to the
/// vmlinux type `btf_id`, whose loads the verifier turns into faulting-safe
/// direct loads. A call of the placeholder helper [`KFUNC_RDONLY_CAST`]
/// (like aya's helpers, a transmuted id compiles to `call imm`), which
/// userspace rewrites into the kfunc call before loading.
#[inline(always)]
pub(crate) unsafe fn rdonly_cast(obj: u64, btf_id: u32) -> *const u8 {
    let cast: unsafe extern "C" fn(u64, u32) -> *const u8 =
        unsafe { core::mem::transmute(KFUNC_RDONLY_CAST as usize) };
    unsafe { cast(obj, btf_id) }
}

/// A plain load of the field at `offset` in a `bpf_rdonly_cast` object (or
/// one reached from it), which the verifier makes faulting-safe.
#[inline(always)]
pub(crate) fn load<T>(object: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(object.add(offset as usize).cast::<T>()) }
}
