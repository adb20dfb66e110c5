//! Facts about the running kernel, read without ipft, to check ipft against.
use std::{collections::HashMap, fs, process::Command, sync::OnceLock};

use regex::Regex;

/// The tracepoints a correct tracer offers here: every BTF `btf_trace_<name>`
/// typedef with a `struct sk_buff *` argument, with that argument's 0-based
/// position (the hidden context argument not counted). Read from
/// `bpftool btf dump ... format raw`, independently of ipft's BTF code.
pub fn skb_tracepoints() -> Vec<(String, u32)> {
    static FOUND: OnceLock<Vec<(String, u32)>> = OnceLock::new();
    FOUND.get_or_init(find_skb_tracepoints).clone()
}

/// The BTF id of the kernel function `name` (a `FUNC` of vmlinux's BTF).
pub fn btf_function_id(name: &str) -> Option<u32> {
    btf_types()
        .iter()
        .find(|(_, t)| t.kind == "FUNC" && t.name == name)
        .map(|(&id, _)| id)
}

/// vmlinux's BTF types, dumped by bpftool once per test binary.
fn btf_types() -> &'static HashMap<u32, BtfType> {
    static TYPES: OnceLock<HashMap<u32, BtfType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let vmlinux = "/sys/kernel/btf/vmlinux";
        parse_raw_btf(&bpftool(&["btf", "dump", "file", vmlinux, "format", "raw"]))
    })
}

fn find_skb_tracepoints() -> Vec<(String, u32)> {
    let types = btf_types();
    let mut found = Vec::new();
    for btf_type in types.values() {
        let Some(name) = btf_type.name.strip_prefix("btf_trace_") else {
            continue;
        };
        if btf_type.kind != "TYPEDEF" {
            continue;
        }
        // typedef → PTR → FUNC_PROTO(void *ctx, args...)
        let proto = &types[&types[&btf_type.type_id].type_id];
        let mut args = proto.params.iter().skip(1);
        if let Some(pos) = args.position(|&t| is_skb_pointer(types, t)) {
            found.push((name.to_string(), pos as u32));
        }
    }
    found.sort();
    found
}

struct BtfType {
    kind: String,
    name: String,
    type_id: u32,
    params: Vec<u32>,
}

/// `[ID] KIND 'name' ... type_id=N ...`, FUNC_PROTO params on tab-indented
/// lines. Plain string handling: a regex per line is slow in a debug build.
fn parse_raw_btf(dump: &str) -> HashMap<u32, BtfType> {
    let mut types = HashMap::new();
    let mut current = 0;
    for line in dump.lines() {
        if let Some(param) = line.strip_prefix('\t') {
            if let Some(owner) = types.get_mut(&current) {
                let owner: &mut BtfType = owner;
                owner.params.push(type_id(param).unwrap_or(0));
            }
            continue;
        }
        let Some((id, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            continue;
        };
        let Some((kind, rest)) = rest.split_once(" '") else {
            continue;
        };
        let Some((name, attrs)) = rest.split_once('\'') else {
            continue;
        };
        current = id.parse().unwrap();
        let btf_type = BtfType {
            kind: kind.to_string(),
            name: name.to_string(),
            type_id: type_id(attrs).unwrap_or(0),
            params: Vec::new(),
        };
        types.insert(current, btf_type);
    }
    types
}

/// The value of a ` type_id=N` attribute (not `ret_type_id=`).
fn type_id(attrs: &str) -> Option<u32> {
    let value = attrs
        .split_whitespace()
        .find_map(|a| a.strip_prefix("type_id="))?;
    value.parse().ok()
}

fn is_skb_pointer(types: &HashMap<u32, BtfType>, id: u32) -> bool {
    let Some(pointer) = types.get(&id).filter(|t| t.kind == "PTR") else {
        return false;
    };
    let mut target = types.get(&pointer.type_id);
    while let Some(t) = target.filter(|t| {
        matches!(
            t.kind.as_str(),
            "CONST" | "VOLATILE" | "TYPEDEF" | "RESTRICT" | "TYPE_TAG"
        )
    }) {
        target = types.get(&t.type_id);
    }
    target.is_some_and(|t| t.kind == "STRUCT" && t.name == "sk_buff")
}

/// Output of a bpftool command that must succeed.
pub fn bpftool(args: &[&str]) -> String {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .expect("run bpftool (Debian package bpftool; `cargo xtask test` installs it)");
    assert!(
        out.status.success(),
        "bpftool {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every loaded BPF program: (id, name).
pub fn loaded_programs() -> Vec<(u32, String)> {
    let json: serde_json::Value = serde_json::from_str(&bpftool(&["-j", "prog", "list"])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["id"].as_u64().unwrap() as u32;
            (id, p["name"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// Names of ipft's programs (see ipft-ebpf): kprobe_skb_N, fentry_skb_N,
/// fexit_skb_N (and their `_reason_M` variants), kprobe_multi_skb,
/// tp_pN_sM, tp_kfree_skb. The kernel keeps 15 characters of a name.
pub fn is_ipft_program(name: &str) -> bool {
    let prefixes = ["kprobe_skb_", "kprobe_multi_", "fentry_skb_", "fexit_skb_"];
    let tracepoint = Regex::new(r"^(tp_p\d+_s\d+|tp_kfree_skb)$").unwrap();
    prefixes.iter().any(|p| name.starts_with(p)) || tracepoint.is_match(name)
}

/// Ids of the BPF programs a process holds, from its fds' fdinfo (`prog_id:`
/// lines of program and link fds). Works without bpftool's pid support.
pub fn programs_held_by(pid: i32) -> Vec<u32> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = fds
        .flatten()
        .filter_map(|fd| fs::read_to_string(fd.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|id| id.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Pids of every running process named `ipft`, from any test or user.
pub fn ipft_processes() -> Vec<i32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ipft")
        })
        .collect()
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, hence of ipft's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Number of possible CPUs: every cpu/processor_id must be below it.
pub fn possible_cpus() -> u32 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) as u32 }
}

/// Waits (hang protection: 30 s) until none of `ids` is loaded; returns the
/// ones still loaded then. Programs are freed asynchronously after the last
/// fd closes, so a short delay after exit is normal.
pub fn wait_unloaded(ids: &[u32]) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let loaded: Vec<u32> = loaded_programs()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| ids.contains(id))
            .collect();
        if loaded.is_empty() || std::time::Instant::now() >= deadline {
            return loaded;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
