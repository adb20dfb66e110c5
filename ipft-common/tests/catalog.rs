//! Checks the built eBPF object against the program catalog: every catalog
//! entry is a program of the object, in the section of its family, and the
//! object has no program the catalog lacks. Userspace loads programs by the
//! catalog's names, so a mismatch would otherwise show only when a backend
//! fails to find its program at run time.
//!
//! The `-f` filter's placeholder, which userspace finds by name, is checked too.
mod object;

use std::collections::BTreeSet;

use aya_obj::ProgramSection;
use ipft_common::{
    programs::{Family, CATALOG},
    FILTER_FUNCTION,
};

/// Whether aya parsed `section` into the program type `family` needs.
fn section_fits(family: Family, section: &ProgramSection) -> bool {
    match family {
        // kprobe-multi links take a plain kprobe program.
        Family::Kprobe => matches!(section, ProgramSection::KProbe),
        Family::Kretprobe => matches!(section, ProgramSection::KRetProbe),
        Family::Fentry => matches!(section, ProgramSection::FEntry { sleepable: false }),
        Family::Fexit => matches!(section, ProgramSection::FExit { sleepable: false }),
        Family::TpBtf => matches!(section, ProgramSection::BtfTracePoint),
    }
}

#[test]
fn every_catalog_program_is_in_the_object_with_its_family() {
    let object = object::parse();
    let mut wrong = Vec::new();
    for p in CATALOG {
        match object.programs.get(p.name) {
            None => wrong.push(format!("{} is missing", p.name)),
            Some(prog) if !section_fits(p.family, &prog.section) => wrong.push(format!(
                "{} is a {:?} program, not {:?} (section {})",
                p.name,
                prog.section,
                p.family,
                p.family.section()
            )),
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "the eBPF object {} does not match the catalog (rebuild it with `cargo build -p ipft`):\n{}",
        object::path().display(),
        wrong.join("\n")
    );
}

#[test]
fn the_object_has_no_program_the_catalog_lacks() {
    let object = object::parse();
    let listed: BTreeSet<&str> = CATALOG.iter().map(|p| p.name).collect();
    let extra: Vec<&str> = object
        .programs
        .keys()
        .map(String::as_str)
        .filter(|name| !listed.contains(name))
        .collect();
    assert!(
        extra.is_empty(),
        "programs of {} missing from ipft_common::programs::CATALOG: {extra:?}",
        object::path().display()
    );
    assert_eq!(object.programs.len(), CATALOG.len());
}

#[test]
fn the_filter_placeholder_is_one_function_and_no_program() {
    let object = object::parse();
    let found = object
        .functions
        .values()
        .filter(|f| f.name == FILTER_FUNCTION)
        .count();
    assert_eq!(
        found,
        1,
        "{} must have one {FILTER_FUNCTION} function, which ipft replaces with the -f filter",
        object::path().display()
    );
    assert!(!object.programs.contains_key(FILTER_FUNCTION));
}
