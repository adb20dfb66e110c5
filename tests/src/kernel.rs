//! Facts about the running kernel, read without ipft, to check ipft against.
use std::{fs, process::Command, sync::OnceLock};

use regex::Regex;

use crate::btf::{self, Btf};

/// The tracepoints a correct tracer offers here: every BTF `btf_trace_<name>`
/// typedef with a `struct sk_buff *` argument, with that argument's 0-based
/// position (the hidden context argument not counted). Read from the BTF's
/// bytes (see [`btf`]), independently of ipft's BTF code.
pub fn skb_tracepoints() -> Vec<(String, u32)> {
    static FOUND: OnceLock<Vec<(String, u32)>> = OnceLock::new();
    FOUND.get_or_init(find_skb_tracepoints).clone()
}

/// The BTF id of the kernel function `name` (a `FUNC` of vmlinux's BTF).
pub fn btf_function_id(name: &str) -> Option<u32> {
    let btf = vmlinux();
    btf.types()
        .find(|(_, t)| t.kind == btf::KIND_FUNC && btf.name(t) == name)
        .map(|(id, _)| id)
}

/// vmlinux's BTF, read once per test binary.
fn vmlinux() -> &'static Btf {
    static BTF: OnceLock<Btf> = OnceLock::new();
    BTF.get_or_init(|| Btf::read("/sys/kernel/btf/vmlinux"))
}

fn find_skb_tracepoints() -> Vec<(String, u32)> {
    let btf = vmlinux();
    let mut found = Vec::new();
    for (_, typedef) in btf.types().filter(|(_, t)| t.kind == btf::KIND_TYPEDEF) {
        let Some(name) = btf.name(typedef).strip_prefix("btf_trace_") else {
            continue;
        };
        // typedef → PTR → FUNC_PROTO(void *ctx, args...)
        let proto = btf.get(typedef.type_id).and_then(|p| btf.get(p.type_id));
        let Some(proto) = proto.filter(|p| p.kind == btf::KIND_FUNC_PROTO) else {
            continue;
        };
        let mut args = btf.params(proto).iter().skip(1);
        if let Some(pos) = args.position(|&t| btf.points_to_struct(t, "sk_buff")) {
            found.push((name.to_string(), pos as u32));
        }
    }
    found.sort();
    found
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

/// Ids of the BPF programs a process holds: from its fds' fdinfo
/// (`prog_id:` lines of program and link fds; works without bpftool's pid
/// support), and from `bpftool perf list` for programs attached to perf
/// events it holds (kprobes), whose fdinfo names no program.
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
    ids.extend(perf_event_programs(pid));
    ids.sort();
    ids.dedup();
    ids
}

/// Programs attached to perf events that `pid` holds, as the kernel
/// answers BPF_TASK_FD_QUERY (through `bpftool perf list`).
fn perf_event_programs(pid: i32) -> Vec<u32> {
    let json: serde_json::Value = serde_json::from_str(&bpftool(&["-j", "perf", "list"])).unwrap();
    let attached = json.as_array().unwrap().iter();
    attached
        .filter(|p| p["pid"].as_i64() == Some(i64::from(pid)))
        .filter_map(|p| p["prog_id"].as_u64())
        .map(|id| id as u32)
        .collect()
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
