//! With the `libpcap` feature, links libpcap.a statically
//! ([`link_libpcap`]); without it there is nothing to build.
use std::{env, path::PathBuf};

fn main() {
    if env::var_os("CARGO_FEATURE_LIBPCAP").is_some() {
        link_libpcap();
    }
}

/// Where Debian and other distributions keep libpcap.a.
const LIBPCAP_DIRS: &[&str] = &["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"];

/// `-f` compiles its expression with libpcap's own compiler, and ipft must
/// still need no library on the machine it runs on: libpcap.a is linked in.
/// Debian's libpcap0.8-dev has it (`cargo xtask build` installs the
/// package); `LIBPCAP_LIB_DIR` names another directory holding it. The
/// archive's D-Bus capture module wants libdbus, which ipft does not link:
/// `src/dbus.rs` says why and stands in for it.
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
