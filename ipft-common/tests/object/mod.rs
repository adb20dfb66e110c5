//! The built eBPF object, for the tests that check it against ipft-common's
//! declarations.
//!
//! The object is `$IPFT_EBPF_OBJECT` when set, else the one the build of
//! ipft (ipft/build.rs) leaves in ipft-ebpf/target/. A missing object fails the test: it cannot be
//! checked, and skipping would hide that.
use std::{
    env, fs,
    path::{Path, PathBuf},
};

use aya_obj::Object;

pub fn path() -> PathBuf {
    match env::var_os("IPFT_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ipft-ebpf/target/bpfel-unknown-none/release/ipft-ebpf"),
    }
}

pub fn parse() -> Object {
    let path = path();
    let data = fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read the eBPF object {} ({err}): build it with `cargo build -p ipft`",
            path.display()
        )
    });
    Object::parse(&data)
        .unwrap_or_else(|err| panic!("cannot parse the eBPF object {}: {err}", path.display()))
}
