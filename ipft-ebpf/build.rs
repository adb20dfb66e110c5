//! Generates the tracepoint slot programs: one `tp_btf` program per
//! (skb position, slot), because a tracepoint program cannot learn at run time
//! which tracepoint it is attached to.
use std::{env, fmt::Write, fs, path::PathBuf};

// Keep in sync with ipft_common::{TP_POSITIONS, TP_SLOTS}; checked by a
// const assertion in main.rs.
const TP_POSITIONS: usize = 5;
const TP_SLOTS: usize = 32;

fn main() {
    let mut code = String::new();
    for pos in 0..TP_POSITIONS {
        for slot in 0..TP_SLOTS {
            writeln!(code, "tp_slot!(tp_p{pos}_s{slot}, {pos}, {slot});").unwrap();
        }
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("tp_slots.rs");
    fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
