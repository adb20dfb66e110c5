//! The guest's initramfs: busybox, ipft, the host's network tools with their
//! shared libraries, the kernel's modules and the scripts of `tests/vm/`.
//!
//! Written directly as an uncompressed `newc` cpio archive: no cpio tool to
//! install, files keep any guest path we choose, and the kernel unpacks an
//! uncompressed archive fastest under emulation.
use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// An archive being assembled: guest path → content.
#[derive(Default)]
pub struct Image {
    dirs: BTreeSet<String>,
    files: Vec<(String, u32, Vec<u8>)>,
}

impl Image {
    /// Adds a file with the given mode (e.g. 0o755); parents are created.
    /// A path added twice (a tool the suite and the host tests both bring)
    /// keeps the last content.
    pub fn file(&mut self, guest: &str, mode: u32, content: Vec<u8>) {
        self.parents(guest);
        let path = guest.trim_start_matches('/').to_string();
        self.files.retain(|(p, _, _)| *p != path);
        self.files.push((path, mode, content));
    }

    /// Copies a host file (following symlinks) to `guest`.
    pub fn copy(&mut self, host: &Path, guest: &str, mode: u32) -> Result<()> {
        let content = fs::read(host)
            .with_context(|| format!("reading {} for the guest image", host.display()))?;
        self.file(guest, mode, content);
        Ok(())
    }

    pub fn dir(&mut self, guest: &str) {
        self.parents(guest);
        self.dirs.insert(guest.trim_start_matches('/').to_string());
    }

    fn parents(&mut self, guest: &str) {
        let mut path = PathBuf::new();
        let parts: Vec<_> = guest.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            path.push(part);
            self.dirs.insert(path.to_string_lossy().into_owned());
        }
    }

    /// Copies a dynamically linked host program and every library `ldd`
    /// names, each at its host path (so the program's loader finds them).
    pub fn program(&mut self, host: &Path, guest: &str) -> Result<()> {
        self.copy(host, guest, 0o755)?;
        for lib in libraries(host)? {
            let path = lib.to_string_lossy().into_owned();
            if !self
                .files
                .iter()
                .any(|(p, _, _)| *p == path.trim_start_matches('/'))
            {
                self.copy(&lib, &path, 0o755)?;
            }
        }
        Ok(())
    }

    /// Writes the archive (directories first, as the kernel needs them).
    pub fn write(&self, out: &Path) -> Result<()> {
        let mut buf = Vec::new();
        let mut ino = 1;
        for dir in &self.dirs {
            entry(&mut buf, &mut ino, dir, 0o040755, &[]);
        }
        for (path, mode, content) in &self.files {
            entry(&mut buf, &mut ino, path, 0o100000 | mode, content);
        }
        entry(&mut buf, &mut ino, "TRAILER!!!", 0, &[]);
        let mut f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        f.write_all(&buf)?;
        Ok(())
    }
}

/// One `newc` record: a 110-byte ASCII header, the name, the data, each
/// padded to 4 bytes.
fn entry(buf: &mut Vec<u8>, ino: &mut u32, name: &str, mode: u32, data: &[u8]) {
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    let fields = [
        *ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    *ino += 1;
    buf.extend_from_slice(b"070701");
    for f in fields {
        buf.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    pad(buf);
    buf.extend_from_slice(data);
    pad(buf);
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Shared libraries (and the loader) of a host program, from `ldd`.
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .with_context(|| format!("could not run ldd on {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Statically linked programs need nothing more.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text.lines().filter_map(library_path).collect())
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` → the path.
fn library_path(line: &str) -> Option<PathBuf> {
    let line = line.trim();
    let path = match line.split_once("=>") {
        Some((_, rest)) => rest.trim().split(' ').next()?,
        None => line.split(' ').next()?,
    };
    path.starts_with('/').then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_lines() {
        let p = |l| library_path(l).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(
            p("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)").as_deref(),
            Some("/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(
            p("\t/lib64/ld-linux-x86-64.so.2 (0x7f)").as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(p("\tlinux-vdso.so.1 (0x7f)"), None);
    }

    #[test]
    fn newc_records_are_aligned() {
        let mut image = Image::default();
        image.file("/bin/x", 0o755, b"abc".to_vec());
        let dir = std::env::temp_dir().join("ipft-xtask-cpio-test");
        image.write(&dir).unwrap();
        let bytes = fs::read(&dir).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let _ = fs::remove_file(dir);
    }
}
