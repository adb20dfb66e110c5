//! ipft's embedded eBPF object, made ready for loads ipft does itself.
//!
//! aya 0.14 loads each program once, one at a time, and cannot load a
//! kprobe with an expected attach type or a tracing program against a
//! module's BTF. The kprobe-multi and ftrace backends therefore do the last
//! step of aya's loading themselves: they parse the embedded object again,
//! point its map references at the maps aya already created (so every
//! program shares the perf array, the read-only filter and the `--track`
//! maps), link its calls, and load the instructions through
//! [`crate::sys::bpf`] — as often, and from as many threads, as they need.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
};

use anyhow::{bail, Context, Result};
use aya::{maps::Map, Ebpf};
use aya_obj::Object;

use crate::sys::bpf::{self, Insn};

/// The instructions of some of the object's programs, relocated.
pub struct Programs {
    insns: HashMap<String, Vec<Insn>>,
    pub license: CString,
}

impl Programs {
    /// Relocates the programs whose names `wanted` accepts against the maps
    /// of `ebpf` (which must stay alive while they are loaded).
    pub fn relocate(ebpf: &Ebpf, wanted: impl Fn(&str) -> bool) -> Result<Self> {
        let mut object = Object::parse(crate::EBPF_OBJECT)
            .context("cannot parse ipft's embedded eBPF object")?;
        // Linking programs nobody loads is wasted start-up.
        object.programs.retain(|name, _| wanted(name));
        let maps = std::mem::take(&mut object.maps);
        let with_fds = maps
            .iter()
            .map(|(name, map)| Ok((name.as_str(), map_fd(ebpf, name)?, map)))
            .collect::<Result<Vec<_>>>()?;
        // As aya does: every section holding a function counts as text.
        let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
        object
            .relocate_maps(with_fds.into_iter(), &text_sections)
            .context("cannot point ipft's eBPF programs at their maps")?;
        object
            .relocate_calls(&text_sections)
            .context("cannot link the calls of ipft's eBPF programs")?;
        let insns = object
            .programs
            .iter()
            .map(|(name, prog)| {
                let function = &object.functions[&prog.function_key()];
                (
                    name.clone(),
                    function.instructions.iter().map(Insn::from).collect(),
                )
            })
            .collect();
        Ok(Programs {
            insns,
            license: object.license.clone(),
        })
    }

    /// The relocated instructions of program `name`.
    pub fn insns(&self, name: &str) -> Result<&[Insn]> {
        self.insns
            .get(name)
            .map(Vec::as_slice)
            .with_context(|| format!("{name} is missing from the eBPF object"))
    }
}

/// The fd of the map aya created for `name` (aya keeps it open as long as
/// `ebpf` lives).
fn map_fd(ebpf: &Ebpf, name: &str) -> Result<RawFd> {
    let data = match ebpf.map(name) {
        Some(
            Map::Array(data)
            | Map::BloomFilter(data)
            | Map::HashMap(data)
            | Map::LpmTrie(data)
            | Map::LruHashMap(data)
            | Map::PerCpuArray(data)
            | Map::PerCpuHashMap(data)
            | Map::PerCpuLruHashMap(data)
            | Map::PerfEventArray(data)
            | Map::ProgramArray(data)
            | Map::Queue(data)
            | Map::RingBuf(data)
            | Map::Stack(data)
            | Map::StackTraceMap(data)
            | Map::Unsupported(data),
        ) => data,
        Some(_) => bail!("the eBPF map {name} has a type ipft cannot load programs against"),
        None => bail!("the eBPF map {name} was not created when the object was loaded"),
    };
    Ok(data.fd().as_fd().as_raw_fd())
}

/// Loads `program`; when the kernel refuses it, loads it again with the
/// verifier's log, only to say why.
pub fn load(program: &bpf::Program<'_>) -> Result<OwnedFd, (io::Error, String)> {
    bpf::prog_load(program, &mut []).map_err(|err| {
        let mut log = vec![0u8; 1 << 16];
        let _ = bpf::prog_load(program, &mut log);
        (err, log_tail(&log))
    })
}

/// The last lines of a verifier log: where it gave up, and why.
fn log_tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default());
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
