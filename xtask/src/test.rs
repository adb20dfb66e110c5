//! `cargo xtask test`: every test, as CI runs it.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, deps, vm};

#[derive(clap::Args)]
pub struct Options {
    /// Skip the VM suite (it takes several minutes).
    #[arg(long)]
    pub no_vm: bool,
    /// Kernels for the VM suite: 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
}

/// Commands the host end-to-end tests drive, and their Debian packages.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("ping", "iputils-ping"),
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("nft", "nftables"),
    ("bpftool", "bpftool"),
    ("jq", "jq"),
];

pub fn run(opts: &Options) -> Result<()> {
    deps::debian(TEST_PACKAGES)?;
    let bin = build::build(&build::Options::default())?;
    let root = build::root();
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .args(args)
            .env("IPFT_EBPF_OBJECT", build::ebpf_object())
            .env("IPFT_BIN", &bin);
        cmd
    };
    deps::run(&mut cargo(&["fmt", "--all", "--check"])).context("run `cargo fmt --all`")?;
    deps::run(
        Command::new("cargo")
            .current_dir(root.join("ipft-ebpf"))
            .args(["fmt", "--check"]),
    )
    .context("run `cargo fmt` in ipft-ebpf/")?;
    deps::run(&mut cargo(&[
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found problems")?;
    deps::run(&mut cargo(&["test", "--workspace"])).context("tests failed")?;
    if !opts.no_vm {
        vm::run(&vm::Options {
            kernel: opts.kernel.clone(),
        })?;
    }
    Ok(())
}
