//! Builds the eBPF object, then the `ipft` binary that embeds it.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::deps;

#[derive(clap::Args, Default)]
pub struct Options {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Path of the eBPF object the `ipft` build embeds.
pub fn ebpf_object() -> PathBuf {
    root().join("ipft-ebpf/target/bpfel-unknown-none/release/ipft-ebpf")
}

/// Builds the eBPF crate (always optimised: the verifier needs it).
pub fn build_ebpf() -> Result<()> {
    deps::ebpf_toolchain()?;
    deps::run(
        Command::new("cargo")
            .current_dir(root().join("ipft-ebpf"))
            .args([
                "+nightly",
                "build",
                "--quiet",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
            ])
            // rustup's proxies set these for the outer (stable) cargo.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO"),
    )
    .context("building the eBPF programs failed")
}

/// Builds everything; returns the path of the `ipft` binary.
pub fn build(opts: &Options) -> Result<PathBuf> {
    build_ebpf()?;
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(root())
        .args(["build", "--quiet", "--package", "ipft"])
        .env("IPFT_EBPF_OBJECT", ebpf_object());
    if opts.release {
        cargo.arg("--release");
    }
    deps::run(&mut cargo).context("building ipft failed")?;
    let profile = if opts.release { "release" } else { "debug" };
    Ok(root().join("target").join(profile).join("ipft"))
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
