//! `cargo xtask vm-test`: the end-to-end suite inside VMs (being written).
use anyhow::{bail, Result};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Which kernel to boot: 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
}

pub fn run(_opts: &Options) -> Result<()> {
    bail!("the VM suite is not written yet")
}
