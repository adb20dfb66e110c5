//! Generates one program definition per entry of ipft-common's program
//! catalog (`ipft_common::programs::CATALOG`), so that the names userspace
//! looks up there are the names the object has. Each entry becomes one
//! invocation of a macro of `src/programs/`, chosen by its family and role;
//! the macro writes the function (`#[kprobe]` and friends need an
//! identifier, which only generated code can derive from a string).
use std::{env, fmt::Write, fs, path::PathBuf};

use ipft_common::programs::{Family, Program, Role, CATALOG, TP_KFREE_SKB};

fn main() {
    let mut code = String::new();
    for p in CATALOG {
        writeln!(code, "{}", invocation(p)).unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("programs.rs");
    fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}

/// The macro invocation that defines `p`.
fn invocation(p: &Program) -> String {
    let name = p.name;
    match (p.family, p.role, p.skb_pos, p.reason_pos) {
        (Family::Kprobe, Role::Call, Some(skb), None) => format!("kprobe_skb!({name}, {skb});"),
        (Family::Kprobe, Role::Call, Some(skb), Some(reason)) => {
            format!("kprobe_skb_reason!({name}, {skb}, {reason});")
        }
        (Family::Kprobe, Role::Call, None, None) => format!("kprobe_skb_any!({name});"),
        (Family::Kretprobe, Role::Clone, None, None) => format!("kretprobe_clone!({name});"),
        (Family::Kretprobe, Role::Return, None, None) => format!("kretprobe_graph!({name});"),
        (Family::Fentry, Role::Call, Some(skb), None) => format!("fentry_skb!({name}, {skb});"),
        (Family::Fentry, Role::Call, Some(skb), Some(reason)) => {
            format!("fentry_skb_reason!({name}, {skb}, {reason});")
        }
        (Family::Fexit, Role::Return, Some(skb), None) => format!("fexit_skb!({name}, {skb});"),
        (Family::Fexit, Role::Clone, Some(skb), None) => format!("fexit_clone!({name}, {skb});"),
        (Family::TpBtf, Role::Slot(slot), Some(skb), None) => {
            format!("tp_slot!({name}, {skb}, {slot});")
        }
        // Its events carry the fixed identity TP_KFREE_SKB_ID: one program only.
        (Family::TpBtf, Role::Call, Some(skb), Some(reason)) if name == TP_KFREE_SKB => {
            format!("tp_kfree_skb!({name}, {skb}, {reason});")
        }
        _ => panic!("the eBPF crate has no program shape for catalog entry {p:?}"),
    }
}
