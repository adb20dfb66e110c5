//! ipft's embedded eBPF object: its maps created once, its programs maps
//! by the backends themselves.
//!
//! aya's loader parses the whole vmlinux BTF whenever it is created (a
//! quarter of a second under emulation, the largest start-up cost after
//! /proc/kallsyms) though ipft's programs need no CO-RE, and aya 0.14 loads
//! each program once, one at a time, and cannot load a kprobe with an
//! expected attach type or a tracing program against a module's BTF. So
//! ipft creates the maps with aya's map types ([`Maps::create`]), points
//! each program's map references at them and links its calls
//! ([`Programs::relocate`]), and loads the instructions through
//! [`crate::sys::bpf`] — as often, and from as many threads, as a backend
//! needs. Relocating is also where the `-f` filter's translation takes the
//! place of its placeholder function ([`inject_filter`]): every program of
//! every backend gets it from there.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData};
use aya_obj::{EbpfSectionKind, Object};
use ipft_common::{Config, FILTER_FUNCTION};

use crate::sys::bpf::{self, Insn};

/// The eBPF programs, built by `cargo xtask build` and embedded here.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("IPFT_EBPF_OBJECT"));

/// The object's maps, created: programs are relocated against them, and
/// userspace reads them (events, losses, `--track`).
pub struct Maps {
    maps: HashMap<String, Map>,
    /// What the object says about each map, for relocating programs.
    defs: HashMap<String, aya_obj::Map>,
    /// The maps' fds, by name (the maps own them).
    fds: HashMap<String, RawFd>,
    /// `-f`: the filter function's instructions, put in every program
    /// relocated against these maps; empty without a filter.
    filter: Vec<Insn>,
}

impl Maps {
    /// Creates the object's maps, with `config` as the read-only global
    /// `CONFIG` (the verifier sees it as constants: the map is frozen), and
    /// keeps the `-f` filter function (empty for none) for the programs.
    pub fn create(config: &Config, filter: Vec<Insn>) -> Result<Self> {
        let mut object = parse()?;
        let globals = HashMap::from([("CONFIG", (bytes_of(config), true))]);
        object
            .patch_map_data(globals)
            .context("cannot set the filter in ipft's eBPF object")?;
        let mut maps = Maps {
            maps: HashMap::new(),
            defs: HashMap::new(),
            fds: HashMap::new(),
            filter,
        };
        for (name, mut def) in object.maps.drain() {
            if let Some(entries) = unused_map_entries(config, &name) {
                def.set_max_entries(entries);
            }
            let data = create_map(&name, &def)
                .with_context(|| format!("cannot create the eBPF map {name}"))?;
            maps.fds.insert(name.clone(), data.fd().as_fd().as_raw_fd());
            let map = Map::from_map_data(data)
                .with_context(|| format!("the eBPF map {name} has a type aya does not know"))?;
            maps.maps.insert(name.clone(), map);
            maps.defs.insert(name, def);
        }
        Ok(maps)
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }

    /// Sets `key` to `value` in map `name`.
    pub fn update(&self, name: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let raw = *self
            .fds
            .get(name)
            .with_context(|| format!("the eBPF object has no {name} map"))?;
        // SAFETY: the map, which `self.maps` owns, keeps this fd open as
        // long as `self` lives, and the borrow ends before this returns.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        Ok(bpf::map_update_elem(fd, key, value)?)
    }

    /// No maps at all: for tests of what only passes a `Maps` along.
    #[cfg(test)]
    pub fn empty() -> Self {
        Maps {
            maps: HashMap::new(),
            defs: HashMap::new(),
            fds: HashMap::new(),
            filter: Vec::new(),
        }
    }
}

fn parse() -> Result<Object> {
    Object::parse(EBPF_OBJECT).context("cannot parse ipft's embedded eBPF object")
}

/// A run's unused hash maps get one entry: the kernel allocates a hash
/// map's every entry up front, and one entry costs nothing to create.
fn unused_map_entries(config: &Config, name: &str) -> Option<u32> {
    let track = config.flags & ipft_common::CONFIG_TRACK != 0;
    let graph = config.flags & ipft_common::CONFIG_GRAPH != 0;
    match name {
        "TRACKED" | "CLONING" if !track => Some(1),
        "ENTERED" if !graph => Some(1),
        _ => None,
    }
}

/// Creates one map; a global-data map (`.rodata`, `.data`, `.bss`) gets
/// its initial bytes, and `.rodata` is frozen so the verifier can trust it.
fn create_map(name: &str, def: &aya_obj::Map) -> Result<MapData> {
    let data = MapData::create(def.clone(), name, None)?;
    let fd = data.fd().as_fd();
    if !def.data().is_empty() {
        bpf::map_update_elem(fd, &0u32.to_ne_bytes(), def.data())
            .context("cannot write its initial data")?;
    }
    if def.section_kind() == EbpfSectionKind::Rodata {
        bpf::map_freeze(fd).context("cannot freeze it")?;
    }
    Ok(data)
}

/// The bytes of a plain-data value.
fn bytes_of<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: Pod types are plain data without padding: every byte of the
    // value is initialised, and the slice borrows it.
    unsafe { std::slice::from_raw_parts((value as *const T).cast(), std::mem::size_of::<T>()) }
}

/// The instructions of some of the object's programs, relocated.
pub struct Programs {
    insns: HashMap<String, Vec<Insn>>,
    pub license: CString,
}

impl Programs {
    /// Relocates the programs whose names `wanted` accepts against the maps
    /// of `maps` (which must stay alive while they are maps).
    pub fn relocate(maps: &Maps, wanted: impl Fn(&str) -> bool) -> Result<Self> {
        let mut object = parse()?;
        // Linking programs nobody loads is wasted start-up.
        object.programs.retain(|name, _| wanted(name));
        object.maps.clear();
        let with_fds = maps
            .defs
            .iter()
            .map(|(name, def)| (name.as_str(), maps.fds[name], def));
        // As aya does: every section holding a function counts as text.
        let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
        object
            .relocate_maps(with_fds, &text_sections)
            .context("cannot point ipft's eBPF programs at their maps")?;
        if !maps.filter.is_empty() {
            inject_filter(&mut object, &maps.filter)?;
        }
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

/// Makes the `-f` filter's instructions the body of the placeholder
/// function [`FILTER_FUNCTION`], before calls are linked: aya-obj then
/// copies the body into every program that calls it and points the calls at
/// the copy.
fn inject_filter(object: &mut Object, filter: &[Insn]) -> Result<()> {
    let function = object
        .functions
        .values_mut()
        .find(|f| f.name == FILTER_FUNCTION)
        .with_context(|| format!("ipft's eBPF object has no {FILTER_FUNCTION} function"))?;
    function.instructions = filter.iter().map(Into::into).collect();
    // Linking looks relocations up by section offset: past the placeholder's
    // end they belong to the next functions of its section. The filter
    // has none (no map, no call but helpers): a section without any.
    function.section_index.0 = usize::MAX;
    // The placeholder's source lines describe other instructions.
    function.line_info = Default::default();
    Ok(())
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

#[cfg(test)]
mod tests {
    use ipft_common::programs::{self as catalog, Family, Role};

    use super::*;

    /// Where each of a program's calls of its own functions lands.
    fn call_targets(insns: &[Insn]) -> Vec<usize> {
        let call = |i: &Insn| i.code == 0x85 && i.regs >> 4 == 1;
        let calls = insns.iter().enumerate().filter(|(_, i)| call(i));
        calls
            .map(|(at, i)| (at as i64 + 1 + i64::from(i.imm)) as usize)
            .collect()
    }

    #[test]
    fn every_program_that_filters_calls_the_injected_filter() {
        let mut object = parse().unwrap();
        let filter = [Insn::mov64_imm(0, 0x1f17), Insn::exit()];
        inject_filter(&mut object, &filter).unwrap();
        let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
        object.relocate_calls(&text_sections).unwrap();
        for (name, program) in &object.programs {
            let function = &object.functions[&program.function_key()];
            let insns: Vec<Insn> = function.instructions.iter().map(Insn::from).collect();
            let at = insns.windows(2).position(|w| w == filter);
            let entry = catalog::find(name).unwrap();
            // Returns and kretprobes report what their entry decided.
            let filters = entry.role != Role::Return && entry.family != Family::Kretprobe;
            assert_eq!(at.is_some(), filters, "{name}");
            if let Some(at) = at {
                assert!(
                    call_targets(&insns).contains(&at),
                    "{name} calls its filter"
                );
            }
        }
    }

    #[test]
    fn an_object_without_the_placeholder_is_an_error() {
        let mut object = parse().unwrap();
        object.functions.retain(|_, f| f.name != FILTER_FUNCTION);
        let err = inject_filter(&mut object, &[Insn::exit()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ipft's eBPF object has no ipft_filter function"
        );
    }
}
