//! Build orchestration: `cargo xtask <command>`.
//!
//! The eBPF crate needs nightly, `rust-src` and `bpf-linker`; the tests need
//! a few Debian packages. Every command installs what is missing first
//! (quietly when it is present), so the README's two commands work on a
//! fresh machine.
mod bench;
mod build;
mod deps;
mod libtest;
mod test;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test ipft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object and the ipft binary (target/{debug,release}/ipft).
    Build(build::Options),
    /// Build, then run ipft as root with the given arguments.
    Run {
        #[command(flatten)]
        build: build::Options,
        /// Arguments for ipft, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run every test: formatting, lints, unit tests, host end-to-end tests, VM tests.
    Test(test::Options),
    /// Run the end-to-end suite inside VMs on Debian kernels.
    VmTest(vm::Options),
    /// Measure start-up, stop, loss, overhead and memory against ipft's targets (not a test).
    Bench(bench::Options),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Build(opts) => build::build(&opts).map(drop),
        Command::Run { build, args } => build::run(&build, &args),
        Command::Test(opts) => test::run(&opts),
        Command::VmTest(opts) => {
            vm::run(&opts).map(|tally| println!("vm-test: {}", tally.counts()))
        }
        Command::Bench(opts) => bench::run(&opts),
    }
}
