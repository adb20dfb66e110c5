//! Harness for ipft's host end-to-end tests: real packets through the real
//! kernel, traced by the real binary (`IPFT_BIN`, set by `cargo xtask test`).
//!
//! - [`harness`]: each test binary's main (`tests!`): libtest's command line
//!   and output, and tests that do not apply to this kernel ignored, with
//!   why, before any runs; [`needs`]: what a test can need of the kernel.
//! - [`process`]: run ipft, wait for `Trace ready!`, signal it, collect output.
//! - [`packets`]: marked UDP datagrams and `ping -m` on loopback.
//! - [`parse`] (from ipft-output): the aggregate table and the JSON lines,
//!   checked byte for byte.
//! - [`checks`]: assertions shared by the tracing tests.
//! - [`kernel`]: facts read independently of ipft (BTF through [`btf`],
//!   loaded programs, clocks).
//! - [`capabilities`]: what this kernel allows (asked through [`bpf`]), hence
//!   what ipft must do here: `auto`'s choice, each `-b`'s outcome.
//! - [`teardown`], [`load`]: for robust.rs and flood.rs: what an ipft leaves
//!   behind however it ends; a packet flood, streamed lines counted, memory.
//! - [`marks`]: one mark per test, so tests running in parallel (each with its
//!   own ipft) never see each other's packets.
//! - [`scripting`], [`netns`], [`flows`], [`details`]: for script.rs and
//!   packet.rs: scratch files, readiness, namespaces and iptables rules torn
//!   down on drop, traffic with a known end, ipft's summary/drop/field output.
//! - [`tshark`]: for pcapng.rs: ipft's `-w` output read by tshark.
//! - [`vm`]: the VM suite's scenarios and their verdicts (tests/vm.rs judges
//!   what `cargo xtask vm-test` collected from the guests).
pub mod bpf;
pub mod btf;
pub mod capabilities;
pub mod checks;
pub mod details;
pub mod flows;
pub mod harness;
pub mod kernel;
pub mod load;
pub mod marks;
pub mod needs;
pub mod netns;
pub mod packets;
pub mod process;
pub mod scripting;
pub mod teardown;
pub mod tshark;
pub mod vm;

pub use capabilities::capabilities;
/// The parser lives with the output it parses, in ipft-output.
pub use ipft_output::parse;
pub use process::{ipft_bin, run, Ipft, Output, Setup, StdoutMode};
