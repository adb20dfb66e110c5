//! The test stand-in for bpf(2), which every `sys::bpf` wrapper calls
//! under `cfg(test)`: it records each call's command and attr bytes and
//! answers with a handler the test sets (per thread, so tests running in
//! parallel do not see each other's calls). A test that needs the kernel
//! itself says so with [`use_the_kernel`].
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
