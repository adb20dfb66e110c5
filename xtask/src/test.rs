//! `cargo xtask test`: every test, as CI runs it.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

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
    // ipft links libpcap.a; clippy and the unit tests build it too.
    deps::LIBPCAP,
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
    let (passed, failed) = cargo_test(&mut cargo(&["test", "--workspace"]))?;
    if !opts.no_vm {
        vm::run(&vm::Options {
            kernel: opts.kernel.clone(),
        })?;
    }
    // One closing line for the whole run (the VM suite's cases are in its
    // table above; it fails the run on any failure).
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, passing its output through, and adds up the counts of
/// its `test result:` lines.
fn cargo_test(cmd: &mut Command) -> Result<(u64, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            passed += count(counts, "passed");
            failed += count(counts, "failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("tests failed ({failed} failed, {passed} passed)");
    }
    Ok((passed, failed))
}

/// The number before `word` in `ok. 9 passed; 0 failed; …`.
fn count(counts: &str, word: &str) -> u64 {
    counts
        .split(';')
        .filter_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word)
        })
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_come_from_cargo_test_result_lines() {
        let line =
            "ok. 9 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.75s";
        assert_eq!(count(line, "passed"), 9);
        assert_eq!(count(line, "failed"), 2);
        assert_eq!(count("FAILED. 3 passed; 1 failed; 0 ignored", "passed"), 3);
    }
}
