//! Every map of ipft's eBPF object, and its globals: name, kind, key and
//! value sizes, and entries, declared once.
//!
//! The eBPF crate sizes its maps from these declarations and checks at
//! compile time that its key and value types have the declared sizes; the
//! userspace code names the maps it creates, fills and reads by
//! [`Map::name`]; and a test (`ipft-common/tests/maps.rs`) checks the built
//! object against [`MAPS`] and [`GLOBALS`], both ways.
//!
//! Everything is `const`, so that the eBPF side can use it too.

use core::mem::size_of;

use crate::{ArgSlot, Call, CaptureRecord, Cloning, Config, ENTERED_MAX, STACKS_MAX, TRACKED_MAX};

/// The kernel map type of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `BPF_MAP_TYPE_HASH`.
    HashMap,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PerCpuArray,
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: one perf ring per CPU.
    PerfEventArray,
    /// `BPF_MAP_TYPE_STACK_TRACE`: kernel stacks by id.
    StackTrace,
}

/// One map of ipft's eBPF object, as the object declares it (userspace may
/// create it with fewer entries: see `attach/programs.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Map {
    /// The map's name in the object (its symbol).
    pub name: &'static str,
    pub kind: Kind,
    /// Bytes of a key and of a value.
    pub key_size: u32,
    pub value_size: u32,
    /// Entries the object asks for; 0 for [`EVENTS`], which gets one per
    /// CPU when it is created.
    pub max_entries: u32,
}

/// A map whose keys are `K` and values `V`.
const fn map<K, V>(name: &'static str, kind: Kind, max_entries: u32) -> Map {
    Map {
        name,
        kind,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
    }
}

/// The frames a kernel stack holds (`PERF_MAX_STACK_DEPTH`): a [`STACKS`]
/// value is one address per frame.
pub const STACK_DEPTH: usize = 127;

/// The matched calls' [`Event`]s (and `-w`'s [`CaptureRecord`]s), one perf
/// ring per CPU. Its values are the rings' file descriptors.
pub const EVENTS: Map = map::<u32, u32>("EVENTS", Kind::PerfEventArray, 0);
/// `--track`: skbs that matched once, followed until they are freed.
pub const TRACKED: Map = map::<u64, u8>("TRACKED", Kind::HashMap, TRACKED_MAX);
/// `--track`: identities of the functions that free an skb (filled by
/// userspace): a tracked skb is forgotten once one of them saw it.
pub const FREES: Map = map::<u64, u8>("FREES", Kind::HashMap, 256);
/// Events the perf rings had no room for, per CPU.
pub const LOST: Map = map::<u32, u64>("LOST", Kind::PerCpuArray, 1);
/// `-w`: how many captures can be assembled at once on one CPU: a program
/// in task context, interrupted by one in softirq, by one in hard IRQ, by
/// one in NMI.
pub const CAPTURE_LEVELS: u32 = 4;
/// `-w`: each CPU's records being assembled, one per nesting level (a
/// record does not fit the 512-byte stack).
pub const CAPTURES: Map = map::<u32, CaptureRecord>("CAPTURES", Kind::PerCpuArray, CAPTURE_LEVELS);
/// `-w`: how many captures this CPU is assembling now.
pub const CAPTURE_DEPTH: Map = map::<u32, u32>("CAPTURE_DEPTH", Kind::PerCpuArray, 1);
/// function_graph: traced calls in flight, and their skbs.
pub const ENTERED: Map = map::<Call, u64>("ENTERED", Kind::HashMap, ENTERED_MAX);
/// Kernel stacks of traced calls (`--stack`, and fentry's drop programs).
pub const STACKS: Map = map::<u32, [u64; STACK_DEPTH]>("STACKS", Kind::StackTrace, STACKS_MAX);
/// `--track`: identities of the functions that clone or copy an skb.
pub const CLONERS: Map = map::<u64, u8>("CLONERS", Kind::HashMap, 64);
/// kprobe-multi: where `kprobe_skb_any`'s functions have their skb and
/// drop reason, in the slot of their identity (`crate::arg_slot`).
pub const ARG_SLOTS: Map = map::<u32, ArgSlot>("ARG_SLOTS", Kind::Array, crate::ARG_SLOTS);
/// kprobe-multi: the same for the identities whose slot of [`ARG_SLOTS`]
/// another took.
pub const ARGS: Map = map::<u64, u16>("ARGS", Kind::HashMap, 4096);
/// `--track` on kprobes: a cloning call in flight, from entry to return,
/// by `bpf_get_current_pid_tgid()`.
pub const CLONING: Map = map::<u64, Cloning>("CLONING", Kind::HashMap, 4096);
/// `--track`: how many skbs could not be tracked because [`TRACKED`] was
/// full, per CPU.
pub const TRACK_FULL: Map = map::<u32, u64>("TRACK_FULL", Kind::PerCpuArray, 1);

/// Every map of ipft's eBPF object, and nothing else (besides the data
/// sections of the [`GLOBALS`]).
pub const MAPS: &[Map] = &[
    EVENTS,
    TRACKED,
    FREES,
    LOST,
    CAPTURES,
    CAPTURE_DEPTH,
    ENTERED,
    STACKS,
    CLONERS,
    ARG_SLOTS,
    ARGS,
    CLONING,
    TRACK_FULL,
];

/// The map named `name`.
pub fn find(name: &str) -> Option<&'static Map> {
    MAPS.iter().find(|m| m.name == name)
}

/// Where a global variable of the object lives: aya makes one map, of one
/// entry, of each data section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    /// `.rodata`: set before loading, then frozen (the verifier sees its
    /// values as constants).
    Rodata,
    /// `.bss`: zero at load, written by the programs.
    Bss,
}

impl Section {
    /// The ELF section's name, which is also its map's.
    pub const fn name(self) -> &'static str {
        match self {
            Section::Rodata => ".rodata",
            Section::Bss => ".bss",
        }
    }
}

/// One global variable of ipft's eBPF object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    /// The variable's symbol.
    pub name: &'static str,
    pub section: Section,
    /// Its size in bytes.
    pub size: u32,
}

/// The run's [`Config`], which userspace writes into the object before
/// loading it.
pub const CONFIG: Global = Global {
    name: "CONFIG",
    section: Section::Rodata,
    size: size_of::<Config>() as u32,
};
/// `--track`: at least how many skbs [`TRACKED`] holds (the programs skip
/// the look-up while it is 0).
pub const TRACKED_COUNT: Global = Global {
    name: "TRACKED_COUNT",
    section: Section::Bss,
    size: size_of::<u64>() as u32,
};

/// Every global variable of ipft's eBPF object that userspace or the
/// programs name.
pub const GLOBALS: &[Global] = &[CONFIG, TRACKED_COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in MAPS.iter().enumerate() {
            assert!(
                MAPS[i + 1..].iter().all(|n| n.name != m.name),
                "{} is listed twice",
                m.name
            );
            assert_eq!(find(m.name), Some(m));
            assert!(GLOBALS.iter().all(|g| g.name != m.name));
        }
        assert_eq!(find("CONFIG"), None);
    }
}
