//! The kernel's BTF: vmlinux and each module's split BTF, opened cheaply,
//! with one sentence for a missing or damaged file.
use std::{
    fs, io,
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Result};
use btf_rs::Btf;

use super::raw::Section;

#[cfg(test)]
use crate::cli::SYS_BTF_DIR;

/// The kernel's BTF: vmlinux, plus every module's split BTF as raw
/// records (only the function scan reads modules: see [`super::raw`]).
pub struct KernelBtf {
    pub vmlinux: Vmlinux,
    /// (module name, split BTF), sorted by name.
    pub modules: Vec<(String, Section)>,
}

/// vmlinux's BTF, through btf-rs (what it derefs to) and as raw records.
pub struct Vmlinux {
    btf: Btf,
    pub raw: Section,
}

impl Vmlinux {
    pub fn new(btf: Btf, raw: Section) -> Self {
        Vmlinux { btf, raw }
    }

    /// The ids of the types called `name`: found during the raw walk for
    /// the names start-up asks for, else by btf-rs's scan of every type.
    pub fn ids(&self, name: &str) -> Vec<u32> {
        match self.raw.ids(name) {
            Some(ids) => ids.to_vec(),
            None => self.btf.resolve_ids_by_name(name).unwrap_or_default(),
        }
    }

    /// The types called `name`.
    pub fn types(&self, name: &str) -> Vec<btf_rs::Type> {
        let ids = self.ids(name).into_iter();
        ids.filter_map(|id| self.btf.resolve_type_by_id(id).ok())
            .collect()
    }
}

impl std::ops::Deref for Vmlinux {
    type Target = Btf;

    fn deref(&self) -> &Btf {
        &self.btf
    }
}

impl KernelBtf {
    /// Reads vmlinux BTF and, when `with_modules`, every module's split BTF.
    pub fn load(dir: &Path, with_modules: bool) -> Result<Self> {
        let vmlinux_path = dir.join("vmlinux");
        let (btf, raw) = open_vmlinux(&vmlinux_path).map_err(|e| btf_error(&vmlinux_path, e))?;
        let mut kernel = KernelBtf {
            vmlinux: Vmlinux::new(btf, raw),
            modules: Vec::new(),
        };
        if with_modules {
            kernel.load_modules(dir);
        }
        Ok(kernel)
    }

    /// Every module's split BTF; a module unloaded while we read, or a bad
    /// file, only loses that module.
    pub fn load_modules(&mut self, dir: &Path) {
        let raw = &self.vmlinux.raw;
        self.modules = module_btf_paths(dir)
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                Some((name, Section::split(fs::read(&path).ok()?, raw)?))
            })
            .collect();
    }
}

/// Opens vmlinux BTF twice over its bytes, read once: btf-rs's mmap
/// backend reads types where they lie, which makes start-up several times
/// quicker than parsing ~150,000 types up front (measured on 6.18: 19 ms
/// against 126 ms), and the raw records scan functions. Kernels before
/// 6.15 cannot mmap the sysfs file, so btf-rs maps an in-memory copy of
/// the bytes. A file shorter than its header says is refused before
/// anything reads past its end.
fn open_vmlinux(path: &Path) -> btf_rs::Result<(Btf, Section)> {
    let bytes = fs::read(path)?;
    let eof = || btf_rs::Error::IO(io::Error::from(io::ErrorKind::UnexpectedEof));
    if is_short(&bytes, bytes.len() as u64) {
        return Err(eof());
    }
    let btf = match Btf::from_file_with_backend(path, btf_rs::Backend::Mmap) {
        Ok(btf) => btf,
        Err(_) => {
            let copy = memory_file(&bytes)?;
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
            // The mapping outlives the fd: closing `copy` afterwards is fine.
            Btf::from_file_with_backend(by_fd, btf_rs::Backend::Mmap)?
        }
    };
    let raw = Section::vmlinux(bytes)
        .ok_or_else(|| btf_rs::Error::Format("not BTF in this machine's byte order".to_string()))?;
    Ok((btf, raw))
}

/// An anonymous in-memory file holding `bytes`.
fn memory_file(bytes: &[u8]) -> io::Result<fs::File> {
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"ipft-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    io::Write::write_all(&mut file, bytes)?;
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

/// How deep anonymous members nest, or modifiers chain, before ipft gives
/// up: real kernels stay within a handful, and a corrupt BTF can make a
/// type contain or name itself, which would otherwise never end.
pub(super) const MAX_DEPTH: usize = 32;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::discover::{drop_reasons, functions, offsets, tracepoints};

    /// The running kernel's BTF, modules included: discovery must work on
    /// the real thing, not only on fixtures.
    pub fn running_kernel() -> KernelBtf {
        KernelBtf::load(Path::new(SYS_BTF_DIR), true).expect("this kernel has BTF")
    }

    #[test]
    fn btf_read_through_an_in_memory_file_is_the_same() {
        // The path kernels before 6.15 take: sysfs BTF cannot be mmap'ed.
        let sysfs = fs::read(Path::new(SYS_BTF_DIR).join("vmlinux")).unwrap();
        let copy = memory_file(&sysfs).unwrap();
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        let btf = Btf::from_file_with_backend(by_fd, btf_rs::Backend::Mmap).unwrap();
        let btf = Vmlinux::new(btf, Section::vmlinux(sysfs).unwrap());
        drop(copy);
        let direct = running_kernel();
        assert_eq!(offsets(&btf).unwrap(), offsets(&direct.vmlinux).unwrap());
        assert_eq!(tracepoints(&btf), tracepoints(&direct.vmlinux));
    }

    #[test]
    fn missing_btf_is_one_clear_error() {
        let err = KernelBtf::load(Path::new("/nonexistent"), false)
            .err()
            .unwrap();
        assert!(format!("{err}").contains("CONFIG_DEBUG_INFO_BTF"));
    }

    /// discovery fails with a sentence or works, never panics.
    /// The names found during the raw walk are the ones btf-rs's scan
    /// finds, with the same ids.
    #[test]
    fn looked_up_names_match_a_full_scan() {
        let kernel = running_kernel();
        for name in super::super::raw::LOOKED_UP {
            let scanned = kernel.vmlinux.resolve_ids_by_name(name).unwrap();
            assert_eq!(kernel.vmlinux.ids(name), scanned, "{name}");
        }
        assert!(!kernel.vmlinux.ids("sk_buff").is_empty());
        // Any other name is still found, by btf-rs's scan.
        assert!(!kernel.vmlinux.ids("ip_rcv").is_empty());
    }

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
