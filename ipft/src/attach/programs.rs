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

/// The eBPF programs, built by ipft/build.rs and embedded here.
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
    /// vmlinux BTF id of `bpf_rdonly_cast` when `CONFIG` selects it: what
    /// the programs' placeholder calls become (see [`rewrite_kfunc_calls`]).
    rdonly_cast: Option<u32>,
}

impl Maps {
    /// Creates the object's maps, with `config` as the read-only global
    /// `CONFIG` (the verifier sees it as constants: the map is frozen), and
    /// keeps the `-f` filter function (empty for none) for the programs.
    pub fn create(config: &Config, filter: Vec<Insn>) -> Result<Self> {
        let mut object = parse()?;
        let globals = HashMap::from([(ipft_common::maps::CONFIG.name, (bytes_of(config), true))]);
        object
            .patch_map_data(globals)
            .context("cannot set the filter in ipft's eBPF object")?;
        let cast = config.flags & ipft_common::CONFIG_RDONLY_CAST != 0;
        let mut maps = Maps {
            maps: HashMap::new(),
            defs: HashMap::new(),
            fds: HashMap::new(),
            filter,
            rdonly_cast: cast.then_some(config.rdonly_cast_btf_id),
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

    /// A descriptor of map `name` of one's own, for reading it after
    /// these maps are gone.
    pub fn fd(&self, name: &str) -> Result<OwnedFd> {
        let raw = *self
            .fds
            .get(name)
            .with_context(|| format!("the eBPF object has no {name} map"))?;
        // SAFETY: the map, which `self.maps` owns, keeps this fd open while
        // it is duplicated.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        fd.try_clone_to_owned()
            .with_context(|| format!("cannot duplicate the descriptor of the {name} map"))
    }

    /// No maps at all: for tests of what only passes a `Maps` along.
    #[cfg(test)]
    pub fn empty() -> Self {
        Maps {
            maps: HashMap::new(),
            defs: HashMap::new(),
            fds: HashMap::new(),
            filter: Vec::new(),
            rdonly_cast: None,
        }
    }
}

fn parse() -> Result<Object> {
    Object::parse(EBPF_OBJECT).context("cannot parse ipft's embedded eBPF object")
}

/// A run's unused hash maps get one entry: the kernel allocates a hash
/// map's every entry up front, and one entry costs nothing to create. The
/// stack map, a kilobyte an entry, is small unless `--stack` asks for it.
fn unused_map_entries(config: &Config, name: &str) -> Option<u32> {
    let track = config.flags & ipft_common::CONFIG_TRACK != 0;
    let graph = config.flags & ipft_common::CONFIG_GRAPH != 0;
    let stack = config.flags & (ipft_common::CONFIG_STACK | ipft_common::CONFIG_STACK_DROPS) != 0;
    match ipft_common::maps::find(name).copied() {
        Some(ipft_common::maps::TRACKED | ipft_common::maps::CLONING) if !track => Some(1),
        Some(ipft_common::maps::ENTERED) if !graph => Some(1),
        Some(ipft_common::maps::STACKS) if !stack => Some(ipft_common::STACKS_DROPS_ONLY),
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
                let mut insns: Vec<Insn> = function.instructions.iter().map(Insn::from).collect();
                rewrite_kfunc_calls(&mut insns, maps.rdonly_cast);
                (name.clone(), insns)
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

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call to a kernel function (kfunc) by its BTF id.
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Turns each call of the placeholder helper `KFUNC_RDONLY_CAST` into a call
/// of the kfunc `bpf_rdonly_cast` (`rdonly_cast`: its vmlinux BTF id; `off`
/// 0 names vmlinux), or, where the kernel lacks it, into `r0 = 0`. The
/// programs reach that call only when `CONFIG` says the kernel has the
/// kfunc, and the verifier skips the branch otherwise; but an unknown helper
/// id must not reach it even in dead code, whatever a kernel version does
/// with unreachable instructions.
fn rewrite_kfunc_calls(insns: &mut [Insn], rdonly_cast: Option<u32>) {
    let placeholder = ipft_common::KFUNC_RDONLY_CAST as i32;
    for insn in insns
        .iter_mut()
        .filter(|i| i.code == CALL && i.regs >> 4 == 0 && i.imm == placeholder)
    {
        *insn = match rdonly_cast {
            Some(id) => Insn {
                code: CALL,
                regs: BPF_PSEUDO_KFUNC_CALL << 4,
                off: 0,
                imm: id as i32,
            },
            None => Insn::mov64_imm(0, 0),
        };
    }
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

    fn call(src: u8, imm: i32) -> Insn {
        Insn {
            code: CALL,
            regs: src << 4,
            off: 0,
            imm,
        }
    }

    /// A mark read as the programs compile it: a helper call, the
    /// placeholder, a bpf-to-bpf call whose immediate happens to equal it.
    fn program() -> Vec<Insn> {
        let placeholder = ipft_common::KFUNC_RDONLY_CAST as i32;
        vec![
            call(0, 113), // bpf_probe_read_kernel
            call(0, placeholder),
            call(1, placeholder), // BPF_PSEUDO_CALL: an offset, not a helper
            Insn::exit(),
        ]
    }

    #[test]
    fn the_placeholder_becomes_the_kfunc_call() {
        let mut insns = program();
        rewrite_kfunc_calls(&mut insns, Some(12345));
        let mut want = program();
        want[1] = call(BPF_PSEUDO_KFUNC_CALL, 12345);
        assert_eq!(insns, want);
    }

    #[test]
    fn without_the_kfunc_the_placeholder_becomes_r0_0() {
        let mut insns = program();
        rewrite_kfunc_calls(&mut insns, None);
        let mut want = program();
        want[1] = Insn::mov64_imm(0, 0);
        assert_eq!(insns, want);
    }

    /// The programs' mark read compiles to the placeholder call (else it
    /// would be read the slow way everywhere), and the rewrite leaves none
    /// of it in any function. (Relocation against real maps needs bpf(),
    /// which unit tests lack: the end-to-end tests load the result.)
    #[test]
    fn the_embedded_programs_call_it_and_the_rewrite_leaves_none() {
        let placeholder = ipft_common::KFUNC_RDONLY_CAST as i32;
        let is_placeholder = |i: &Insn| i.code == CALL && i.regs >> 4 == 0 && i.imm == placeholder;
        let object = parse().unwrap();
        for name in ["kprobe_skb_0", "tp_p0_s0", "fentry_skb_0"] {
            let prog = &object.programs[name];
            let function = &object.functions[&prog.function_key()];
            assert!(
                function
                    .instructions
                    .iter()
                    .map(Insn::from)
                    .any(|i| is_placeholder(&i)),
                "{name} does not call KFUNC_RDONLY_CAST"
            );
        }
        for rdonly_cast in [Some(777), None] {
            for function in object.functions.values() {
                let mut insns: Vec<Insn> = function.instructions.iter().map(Insn::from).collect();
                let calls = insns.iter().filter(|i| is_placeholder(i)).count();
                rewrite_kfunc_calls(&mut insns, rdonly_cast);
                assert!(!insns.iter().any(is_placeholder), "{}", function.name);
                let kfuncs = insns
                    .iter()
                    .filter(|i| i.code == CALL && i.regs >> 4 == BPF_PSEUDO_KFUNC_CALL)
                    .count();
                assert_eq!(kfuncs, calls * rdonly_cast.is_some() as usize);
            }
        }
    }
}
