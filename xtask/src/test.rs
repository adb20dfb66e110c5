//! `cargo xtask test`: every test, as CI runs it.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build, deps, libtest, vm};

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
    // Reads ipft's -w pcapng files (tests/tests/pcapng.rs). Its debconf
    // question (may non-root users capture?) takes its default, no, under
    // deps::debian's DEBIAN_FRONTEND=noninteractive.
    ("tshark", "tshark"),
    // ipft links libpcap.a; clippy and the unit tests build it too.
    deps::LIBPCAP,
];

pub fn run(opts: &Options) -> Result<()> {
    deps::debian(TEST_PACKAGES)?;
    // robust.rs makes rare moments happen through the test hooks.
    let bin = build::build(&build::Options::for_tests(false))?;
    let root = build::root();
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .args(args)
            .env("IPFT_BIN", &bin)
            .env("IPFT_TESTS_MUST_RUN", "1");
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
        // The hooks' code too (see build::Options::test_hooks).
        "--features",
        "ipft/test-hooks",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found problems")?;
    let mut tally = libtest::run(&mut cargo(&["test", "--workspace"]))?;
    if !opts.no_vm {
        tally.add(vm::run(&vm::Options {
            kernel: opts.kernel.clone(),
            no_host_tests: false,
        })?);
    }
    // One closing line for the whole run, the host's tests and the VM
    // verdict trials together (a failure has already failed the run), after
    // the tests that did not apply (ignored), each with its reason.
    for (test, why) in tally.skips() {
        println!("skipped (N/A here): {test}: {why}");
    }
    println!("tests: {}", tally.counts());
    Ok(())
}
