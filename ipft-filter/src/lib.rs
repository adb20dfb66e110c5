//! ipft's `-f` filter, apart from the kernel: a pcap-filter expression
//! compiled by libpcap (`pcap`, with the `libpcap` feature; `dbus` stands
//! in for the libdbus calls libpcap.a brings along), the classic program
//! decoded (`cbpf`), and translated to one eBPF function for the running
//! kernel's `sk_buff` layout (`translate`), made of [`insn::Insn`]s.
//!
//! Without the `libpcap` feature the crate needs no libpcap, no BPF, no
//! root and no eBPF object: decoding and translation build and test on
//! any machine.
pub mod cbpf;
#[cfg(feature = "libpcap")]
mod dbus;
pub mod insn;
#[cfg(feature = "libpcap")]
pub mod pcap;
pub mod translate;

pub use translate::{Cast, SkbFields, BYTE_ARRAYS};
