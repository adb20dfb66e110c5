//! Points the build at the eBPF object `cargo xtask build` produced, so that
//! `include_bytes_aligned!` can embed it: ipft ships as one file. (libpcap
//! is linked by ipft-filter's build script.)
use std::{env, path::PathBuf};

fn main() {
    let object = env::var_os("IPFT_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap())
                .join("../ipft-ebpf/target/bpfel-unknown-none/release/ipft-ebpf")
        });
    if !object.exists() {
        panic!(
            "the eBPF object {} is missing: build with `cargo xtask build`",
            object.display()
        );
    }
    println!("cargo:rustc-env=IPFT_EBPF_OBJECT={}", object.display());
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rerun-if-env-changed=IPFT_EBPF_OBJECT");
}
