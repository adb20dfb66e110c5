//! Checks the built eBPF object against the map declarations: every
//! declared map is in the object with its kind, sizes and entries, every
//! declared global is in its data section with its size, and the object has
//! no map nor data section the declarations lack. Userspace creates, fills
//! and reads maps by the declarations' names, so a mismatch would otherwise
//! show only at run time (a map not found, or the kernel refusing a value).
mod object;

use std::collections::{BTreeSet, HashMap};

use aya_obj::{generated::bpf_map_type, EbpfSectionKind};
use ipft_common::maps::{Kind, Section, GLOBALS, MAPS};

/// The kernel map type of `kind`.
fn map_type(kind: Kind) -> u32 {
    let t = match kind {
        Kind::HashMap => bpf_map_type::BPF_MAP_TYPE_HASH,
        Kind::Array => bpf_map_type::BPF_MAP_TYPE_ARRAY,
        Kind::PerCpuArray => bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
        Kind::PerfEventArray => bpf_map_type::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        Kind::StackTrace => bpf_map_type::BPF_MAP_TYPE_STACK_TRACE,
    };
    t as u32
}

fn section_kind(section: Section) -> EbpfSectionKind {
    match section {
        Section::Rodata => EbpfSectionKind::Rodata,
        Section::Bss => EbpfSectionKind::Bss,
    }
}

#[test]
fn every_declared_map_is_in_the_object_as_declared() {
    let object = object::parse();
    let mut wrong = Vec::new();
    for m in MAPS {
        let Some(found) = object.maps.get(m.name) else {
            wrong.push(format!("{} is missing", m.name));
            continue;
        };
        let declared = (map_type(m.kind), m.key_size, m.value_size, m.max_entries);
        let built = (
            found.map_type(),
            found.key_size(),
            found.value_size(),
            found.max_entries(),
        );
        if declared != built {
            wrong.push(format!(
                "{}: (type, key size, value size, entries) is {built:?} in the object, \
                 {declared:?} declared ({:?})",
                m.name, m.kind
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the eBPF object {} does not match ipft_common::maps (rebuild it):\n{}",
        object::path().display(),
        wrong.join("\n")
    );
}

#[test]
fn every_declared_global_is_in_its_section_with_its_size() {
    let mut object = object::parse();
    for g in GLOBALS {
        let section = g.section.name();
        let map = object
            .maps
            .get(section)
            .unwrap_or_else(|| panic!("the object has no {section} section for {}", g.name));
        assert_eq!(map.section_kind(), section_kind(g.section), "{section}");
        // Writes a pattern of the declared size over the global, as
        // userspace writes CONFIG: aya finds the symbol and checks its size.
        let pattern: Vec<u8> = (1..=g.size).map(|i| i as u8 | 0x80).collect();
        object
            .patch_map_data(HashMap::from([(g.name, (&pattern[..], true))]))
            .unwrap_or_else(|err| panic!("{}: {err}", g.name));
        let data = object.maps[section].data();
        assert!(
            data.windows(pattern.len()).any(|w| w == pattern),
            "{} is not in {section}",
            g.name
        );
    }
}

#[test]
fn the_object_has_no_map_the_declarations_lack() {
    let object = object::parse();
    let declared: BTreeSet<&str> = MAPS
        .iter()
        .map(|m| m.name)
        .chain(GLOBALS.iter().map(|g| g.section.name()))
        .collect();
    let extra: Vec<&str> = object
        .maps
        .keys()
        .map(String::as_str)
        .filter(|name| !declared.contains(name))
        .collect();
    assert!(
        extra.is_empty(),
        "maps of {} missing from ipft_common::maps: {extra:?}",
        object::path().display()
    );
}
