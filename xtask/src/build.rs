//! Installs the eBPF toolchain, then builds the `ipft` binary (whose build
//! script builds the eBPF object it embeds), linked statically so that it
//! runs on any x86_64 Linux, old glibc or none.
use std::{
    fs, io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::deps;

#[derive(clap::Args, Default)]
pub struct Options {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Build in the hooks the end-to-end tests and the bench use
    /// (`IPFT_TEST_HOOK`); builds for users leave them out.
    #[arg(long)]
    pub test_hooks: bool,
}

/// The ipft crate's feature that reads `IPFT_TEST_HOOK` (ipft/src/testhook.rs).
const TEST_HOOKS: &str = "test-hooks";

impl Options {
    /// The build the tests, the VM suite and the bench run: with the hooks.
    pub fn for_tests(release: bool) -> Options {
        Options {
            release,
            test_hooks: true,
        }
    }

    /// Arguments for `cargo build --package ipft`.
    fn cargo_args(&self) -> Vec<&'static str> {
        let mut args = Vec::new();
        if self.release {
            args.push("--release");
        }
        if self.test_hooks {
            args.extend(["--features", TEST_HOOKS]);
        }
        args
    }
}

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The target ipft is built for. Naming it, even though it is the host's,
/// makes cargo apply [`STATIC_RUSTFLAGS`] to ipft and its dependencies only:
/// build scripts and proc-macros run on the host and cannot be static.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Links the C runtime (glibc) statically: ipft then needs no library on
/// the machine it runs on, whatever its glibc version.
const STATIC_RUSTFLAGS: (&str, &str) = (
    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
    "-C target-feature=+crt-static",
);

/// Builds everything; returns the path of the statically linked `ipft`
/// binary, `target/x86_64-unknown-linux-gnu/{debug,release}/ipft`, which
/// is also hard-linked to `target/{debug,release}/ipft` (the path people
/// and scripts use; a later plain `cargo build -p ipft` replaces that one
/// with a dynamically linked build, never the returned path).
pub fn build(opts: &Options) -> Result<PathBuf> {
    // ipft/build.rs builds the eBPF object with them.
    deps::ebpf_toolchain()?;
    deps::debian(&[deps::LIBPCAP])?;
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(root())
        .args(["build", "--quiet", "--package", "ipft", "--target", TARGET])
        .env(STATIC_RUSTFLAGS.0, STATIC_RUSTFLAGS.1)
        .args(opts.cargo_args());
    deps::run(&mut cargo).context("building ipft failed")?;
    let profile = if opts.release { "release" } else { "debug" };
    let built = root()
        .join("target")
        .join(TARGET)
        .join(profile)
        .join("ipft");
    if let Some(interp) = elf_interpreter(&built)? {
        // RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS in the environment take
        // precedence over the per-target variable.
        bail!(
            "{} is dynamically linked (its loader is {interp}): RUSTFLAGS or \
             CARGO_ENCODED_RUSTFLAGS replaces {}; unset it, or add `{}` to it",
            built.display(),
            STATIC_RUSTFLAGS.0,
            STATIC_RUSTFLAGS.1
        );
    }
    let usual = root().join("target").join(profile).join("ipft");
    link(&built, &usual)?;
    Ok(built)
}

/// The program interpreter (dynamic loader) an ELF executable names, or
/// `None` for a statically linked one.
pub fn elf_interpreter(path: &Path) -> Result<Option<String>> {
    let elf = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    interpreter(&elf).with_context(|| format!("{} is not a 64-bit ELF file", path.display()))
}

/// The `PT_INTERP` segment of a little-endian ELF64 image.
fn interpreter(elf: &[u8]) -> Option<Option<String>> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    for i in 0..usize::from(u16_at(0x38)?) {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == PT_INTERP {
            let offset = usize::try_from(u64_at(ph + 8)?).ok()?;
            let size = usize::try_from(u64_at(ph + 32)?).ok()?;
            let name = elf.get(offset..offset + size)?;
            let name = name.strip_suffix(b"\0").unwrap_or(name);
            return Some(Some(String::from_utf8_lossy(name).into_owned()));
        }
    }
    Some(None)
}

/// Makes `to` the same file as `from` (a copy where a hard link fails).
fn link(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match fs::remove_file(to) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot replace {}", to.display())),
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Builds, then replaces this process with ipft (through sudo unless root).
pub fn run(opts: &Options, args: &[String]) -> Result<()> {
    let bin = build(opts)?;
    let err = if is_root() {
        Command::new(&bin).args(args).exec()
    } else {
        Command::new("sudo").arg(&bin).args(args).exec()
    };
    Err(err).with_context(|| format!("could not start {}", bin.display()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header and one program header of type `p_type`.
    fn elf_with_segment(p_type: u32) -> Vec<u8> {
        let mut elf = vec![0; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&p_type.to_le_bytes());
        elf
    }

    #[test]
    fn a_dynamic_executable_names_its_loader() {
        // This test binary is linked dynamically, as host programs are.
        let interp = elf_interpreter(&std::env::current_exe().unwrap()).unwrap();
        assert!(interp.is_some_and(|i| i.contains("ld-linux")));
        let mut elf = elf_with_segment(3);
        elf[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes());
        elf[64 + 32..64 + 40].copy_from_slice(&4u64.to_le_bytes());
        elf.extend_from_slice(b"/ld\0");
        assert_eq!(interpreter(&elf), Some(Some("/ld".into())));
    }

    #[test]
    fn a_static_executable_has_no_loader() {
        // PT_LOAD only.
        assert_eq!(interpreter(&elf_with_segment(1)), Some(None));
    }

    #[test]
    fn only_builds_for_tests_have_the_hooks() {
        let user = Options::default();
        assert_eq!(user.cargo_args(), Vec::<&str>::new());
        let release = Options {
            release: true,
            ..Options::default()
        };
        assert_eq!(release.cargo_args(), ["--release"]);
        let features = ["--features", "test-hooks"];
        assert_eq!(Options::for_tests(false).cargo_args(), features);
        let release_tests = Options::for_tests(true).cargo_args();
        assert_eq!(release_tests, ["--release", features[0], features[1]]);
    }

    #[test]
    fn other_files_are_not_elf() {
        assert_eq!(interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(interpreter(&elf_with_segment(3)[..70]), None);
    }
}
