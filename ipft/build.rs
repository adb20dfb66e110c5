//! Builds the eBPF object and points the build at it, so that
//! `include_bytes_aligned!` can embed it: ipft ships as one file
//! ([`ebpf_object`]). And links libpcap statically ([`link_libpcap`]).
use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn main() {
    let object = ebpf_object();
    println!("cargo:rustc-env=IPFT_EBPF_OBJECT={}", object.display());
    link_libpcap();
}

/// The eBPF object: `$IPFT_EBPF_OBJECT` when set (a built object, taken as
/// it is), else ipft-ebpf's, built here. The eBPF crate is a workspace of
/// its own, built with nightly for the BPF target ([`build_ebpf`]).
fn ebpf_object() -> PathBuf {
    println!("cargo:rerun-if-env-changed=IPFT_EBPF_OBJECT");
    if let Some(object) = env::var_os("IPFT_EBPF_OBJECT").map(PathBuf::from) {
        if !object.exists() {
            panic!(
                "the eBPF object {} (IPFT_EBPF_OBJECT) is missing: build it, or unset \
                 IPFT_EBPF_OBJECT to have this build make it",
                object.display()
            );
        }
        println!("cargo:rerun-if-changed={}", object.display());
        return object;
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let crate_dir = root.join("ipft-ebpf");
    // What the object is made from: the eBPF crate and ipft-common (a
    // directory counts as changed when any file below it does).
    for source in [
        "ipft-ebpf/src",
        "ipft-ebpf/build.rs",
        "ipft-ebpf/Cargo.toml",
        "ipft-ebpf/Cargo.lock",
        "ipft-common/src",
        "ipft-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    build_ebpf(&crate_dir);
    crate_dir.join("target/bpfel-unknown-none/release/ipft-ebpf")
}

/// Builds the eBPF crate with nightly, always optimised (the verifier
/// needs it), into its own target directory: the outer build holds the
/// lock of this workspace's, which a nested cargo there would wait on.
fn build_ebpf(crate_dir: &Path) {
    if let Some(missing) = missing_toolchain() {
        panic!(
            "the eBPF programs cannot be built without {missing}: install nightly Rust with \
             rust-src and bpf-linker (`cargo xtask build` does), or set IPFT_EBPF_OBJECT to a \
             built object"
        );
    }
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(crate_dir)
        .args([
            "+nightly",
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(crate_dir.join("target"));
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(steers_the_outer_build) {
            cargo.env_remove(name);
        }
    }
    let status = cargo
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build the eBPF programs: {err}"));
    if !status.success() {
        panic!("building the eBPF programs (ipft-ebpf/) failed ({status}): its errors are above");
    }
}

/// Whether `name` is one of the variables cargo (and rustup, and clippy)
/// set for this build script that would steer the nested build too: the
/// toolchain, compiler and its wrappers, flags, target, target directory,
/// jobserver. Cargo's settings of the user's own (network, registries,
/// terminal) are kept.
fn steers_the_outer_build(name: &str) -> bool {
    const KEPT: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    let cargo = name == "CARGO" || name.starts_with("CARGO_");
    (cargo && !KEPT.iter().any(|kept| name.starts_with(kept)))
        || name.starts_with("RUSTC")
        || name.starts_with("RUSTDOC")
        || ["RUSTUP_TOOLCHAIN", "RUSTFLAGS", "TARGET", "HOST", "OUT_DIR"].contains(&name)
}

/// What of the eBPF toolchain is missing, if anything: nightly (through
/// rustup), its rust-src (`-Z build-std` compiles `core` from it), and
/// bpf-linker.
fn missing_toolchain() -> Option<&'static str> {
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let Some(sysroot) = sysroot else {
        return Some("the nightly toolchain");
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Some("nightly's rust-src component");
    }
    let linker = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !linker.is_ok_and(|status| status.success()) {
        return Some("bpf-linker");
    }
    None
}

/// Where Debian and other distributions keep libpcap.a.
const LIBPCAP_DIRS: &[&str] = &["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"];

/// `-f` compiles its expression with libpcap's own compiler, and ipft must
/// still need no library on the machine it runs on: libpcap.a is linked in.
/// Debian's libpcap0.8-dev has it (`cargo xtask build` installs the
/// package); `LIBPCAP_LIB_DIR` names another directory holding it. The
/// archive's D-Bus capture module wants libdbus, which ipft does not link:
/// `src/select/dbus.rs` says why and stands in for it.
fn link_libpcap() {
    println!("cargo:rerun-if-env-changed=LIBPCAP_LIB_DIR");
    let dirs: Vec<PathBuf> = match env::var_os("LIBPCAP_LIB_DIR") {
        Some(dir) => vec![dir.into()],
        None => LIBPCAP_DIRS.iter().map(PathBuf::from).collect(),
    };
    let Some(dir) = dirs.iter().find(|d| d.join("libpcap.a").is_file()) else {
        panic!(
            "libpcap.a is in none of {dirs:?}: install libpcap0.8-dev (Debian, Ubuntu) \
             or set LIBPCAP_LIB_DIR to the directory that holds it"
        );
    };
    println!("cargo:rerun-if-changed={}", dir.join("libpcap.a").display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=pcap");
}
