//! The catalog of ipft's eBPF programs: every program's name, family and
//! where it reads the skb (and the drop reason).
//!
//! It is the one place program names are spelled. The eBPF crate's build
//! script generates one program definition per entry from [`CATALOG`]; the
//! userspace backends ask the lookup functions below ([`kprobe`],
//! [`fentry`], [`fexit`], [`tracepoint_slot`] and the constants) which
//! program to load; and a test (`ipft-common/tests/catalog.rs`) checks the
//! built object against the catalog, both ways.
//!
//! Everything is `const`, with no allocation, so that the eBPF side and
//! const assertions can use it too.

use crate::{FTRACE_POSITIONS, KPROBE_POSITIONS, TP_POSITIONS, TP_SLOTS};

/// How a program is attached, which decides its kernel program type and the
/// ELF section its code is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// A kprobe: on one function (a perf kprobe event), or on many with a
    /// kprobe-multi link (loaded with `BPF_TRACE_KPROBE_MULTI`).
    Kprobe,
    /// A kretprobe: runs as a function returns.
    Kretprobe,
    /// fentry (`BPF_TRACE_FENTRY`), loaded against one function's BTF.
    Fentry,
    /// fexit (`BPF_TRACE_FEXIT`), loaded against one function's BTF.
    Fexit,
    /// A BTF tracepoint (`BPF_TRACE_RAW_TP` on a `btf_trace_*` type).
    TpBtf,
}

impl Family {
    /// The ELF section the eBPF crate puts this family's programs in (the
    /// part of the section name aya parses the program type from).
    pub const fn section(self) -> &'static str {
        match self {
            Family::Kprobe => "kprobe",
            Family::Kretprobe => "kretprobe",
            Family::Fentry => "fentry",
            Family::Fexit => "fexit",
            Family::TpBtf => "tp_btf",
        }
    }
}

/// What a program reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A call of the function (or a hit of the tracepoint) it is attached
    /// to, identified by the function's address, or, for `tp_kfree_skb`,
    /// by [`crate::TP_KFREE_SKB_ID`].
    Call,
    /// function_graph: the return of a call that its [`Role::Call`] twin
    /// reported (fexit, per skb position), or of any traced call
    /// ([`KRETPROBE_GRAPH`]).
    Return,
    /// A tracepoint hit, identified by `tracepoint_id(skb_pos, slot)`:
    /// one program per attached tracepoint (see [`crate::TP_SLOTS`]).
    Slot(u8),
    /// `--track`: the return of a function that clones or copies an skb;
    /// reports the new skb.
    Clone,
}

/// One eBPF program of ipft's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Program {
    /// The program's (and its function's) name in the object.
    pub name: &'static str,
    pub family: Family,
    pub role: Role,
    /// The argument position of the `struct sk_buff *`, when fixed in the
    /// program. `None` for the kretprobes, which take it from the map their
    /// entry probe filled.
    pub skb_pos: Option<u8>,
    /// The argument position of the `enum skb_drop_reason`, for the
    /// programs of the functions and tracepoint that free an skb with one.
    pub reason_pos: Option<u8>,
}

/// `BPF_OBJ_NAME_LEN` less its NUL: the kernel keeps this many bytes of a
/// program's name (what `bpftool prog` and program info show).
pub const KERNEL_NAME_LEN: usize = 15;

impl Program {
    /// The name as the kernel keeps it: cut to [`KERNEL_NAME_LEN`] bytes
    /// (`kprobe_skb_0_reason_1` is loaded as `kprobe_skb_0_re`). No two
    /// programs share one (a test checks).
    pub const fn kernel_name(&self) -> &'static str {
        kernel_name(self.name)
    }
}

/// `name` cut to [`KERNEL_NAME_LEN`] bytes (all names are ASCII).
const fn kernel_name(name: &'static str) -> &'static str {
    if name.len() <= KERNEL_NAME_LEN {
        return name;
    }
    match core::str::from_utf8(name.as_bytes().split_at(KERNEL_NAME_LEN).0) {
        Ok(cut) => cut,
        Err(_) => panic!("program names are ASCII"),
    }
}

/// The catalog entry the kernel lists as `kernel_name` (a loaded program's
/// name, as [`Program::kernel_name`] gives it).
pub fn find_loaded(kernel_name: &str) -> Option<&'static Program> {
    CATALOG.iter().find(|p| p.kernel_name() == kernel_name)
}

/// `--track` with kprobes: attached to the return of cloning functions.
pub const KRETPROBE_CLONE: &str = "kretprobe_clone";
/// function_graph with kprobes and kprobe-multi: attached to the return
/// of every traced function, whatever its argument layout (it reads no
/// argument: the entry left the skb in the `ENTERED` map).
pub const KRETPROBE_GRAPH: &str = "kretprobe_graph";
/// `--track` with ftrace: attached to the return of cloning functions.
pub const FEXIT_CLONE: &str = "fexit_clone";
/// The `kfree_skb` tracepoint program that also reads the drop reason.
pub const TP_KFREE_SKB: &str = "tp_kfree_skb";
/// kprobe-multi: one program for the functions whose argument layout is
/// rare (the skb after the third argument, or a drop reason): it finds
/// where their skb and drop reason are in the `ARGS` map, by function
/// identity (see [`args`]), so that one link attaches them all. Each
/// link costs start-up time and, at exit, one fprobe unregistration
/// (0.15 s under emulation); the common layouts keep programs of their own
/// (`kprobe_skb_0` to `_2`), whose calls pay no look-up.
pub const KPROBE_SKB_ANY: &str = "kprobe_skb_any";
/// kprobe-multi: the functions whose skb is an argument below this
/// position, and that report no drop reason, have a `kprobe_skb_N` program
/// and a link of their own (the busy positions: 1,600 of 1,700 functions in
/// 6.12); the others' functions go to [`KPROBE_SKB_ANY`].
pub const KPROBE_MULTI_OWN_LINKS: u8 = 3;
const _: () = assert!(KPROBE_MULTI_OWN_LINKS as usize <= KPROBE_POSITIONS);

/// The `ARGS` value of a function whose skb is argument `skb_pos` and
/// whose drop reason, if reported, is argument `reason_pos`.
pub const fn args(skb_pos: u8, reason_pos: Option<u8>) -> u16 {
    let reason = match reason_pos {
        Some(pos) => pos as u16 + 1,
        None => 0,
    };
    skb_pos as u16 | reason << 8
}

/// The positions an `ARGS` value holds: the skb's, and the drop reason's.
pub const fn args_positions(args: u16) -> (u8, Option<u8>) {
    let reason = match (args >> 8) as u8 {
        0 => None,
        pos => Some(pos - 1),
    };
    (args as u8, reason)
}

/// `[prefix0, prefix1, …]`: program names that end in a number, spelled
/// at compile time.
macro_rules! numbered {
    ($prefix:literal: $($n:literal)*) => {
        [$(concat!($prefix, $n)),*]
    };
}

/// `[[tp_p0_s0, tp_p0_s1, …], [tp_p1_s0, …], …]`.
macro_rules! tp_slot_names {
    ([$($pos:literal)*] $slots:tt) => {
        [$(tp_slot_names!(@pos $pos $slots)),*]
    };
    (@pos $pos:literal [$($slot:literal)*]) => {
        [$(concat!("tp_p", $pos, "_s", $slot)),*]
    };
}

// The array types make the compiler check that each list has as many
// names as the constants say.
const KPROBE_SKB: [&str; KPROBE_POSITIONS] = numbered!("kprobe_skb_": 0 1 2 3 4 5);
const FENTRY_SKB: [&str; FTRACE_POSITIONS] = numbered!("fentry_skb_": 0 1 2 3 4 5 6 7 8 9 10 11);
const FEXIT_SKB: [&str; FTRACE_POSITIONS] = numbered!("fexit_skb_": 0 1 2 3 4 5 6 7 8 9 10 11);
const TP_SLOT: [[&str; TP_SLOTS]; TP_POSITIONS] = tp_slot_names!(
    [0 1 2 3 4]
    [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]
);

/// The functions that free an skb with a drop reason have programs of
/// their own, `{family}_skb_{skb}_reason_{reason}`, for these (skb, drop
/// reason) positions: `kfree_skb_reason(skb, reason)` (5.17–6.9) and
/// `sk_skb_reason_drop(sk, skb, reason)` (6.10+).
const REASON_POSITIONS: [(u8, u8); 2] = [(0, 1), (1, 2)];
const KPROBE_REASON: [&str; 2] = ["kprobe_skb_0_reason_1", "kprobe_skb_1_reason_2"];
const FENTRY_REASON: [&str; 2] = ["fentry_skb_0_reason_1", "fentry_skb_1_reason_2"];

/// Number of programs in the object.
pub const COUNT: usize = KPROBE_POSITIONS
    + 2 * FTRACE_POSITIONS
    + TP_POSITIONS * TP_SLOTS
    + 2 * REASON_POSITIONS.len()
    + 5;

/// Every program of ipft's eBPF object, and nothing else.
pub const CATALOG: &[Program] = &catalog();

const fn catalog() -> [Program; COUNT] {
    const fn call(name: &'static str, family: Family, skb: u8, reason: Option<u8>) -> Program {
        Program {
            name,
            family,
            role: Role::Call,
            skb_pos: Some(skb),
            reason_pos: reason,
        }
    }
    let mut out = [call("", Family::Kprobe, 0, None); COUNT];
    let mut n = 0;
    let mut pos = 0;
    while pos < KPROBE_POSITIONS {
        out[n] = call(KPROBE_SKB[pos], Family::Kprobe, pos as u8, None);
        n += 1;
        pos += 1;
    }
    let mut pos = 0;
    while pos < FTRACE_POSITIONS {
        out[n] = call(FENTRY_SKB[pos], Family::Fentry, pos as u8, None);
        out[n + 1] = Program {
            name: FEXIT_SKB[pos],
            family: Family::Fexit,
            role: Role::Return,
            skb_pos: Some(pos as u8),
            reason_pos: None,
        };
        n += 2;
        pos += 1;
    }
    let mut i = 0;
    while i < REASON_POSITIONS.len() {
        let (skb, reason) = REASON_POSITIONS[i];
        out[n] = call(KPROBE_REASON[i], Family::Kprobe, skb, Some(reason));
        out[n + 1] = call(FENTRY_REASON[i], Family::Fentry, skb, Some(reason));
        n += 2;
        i += 1;
    }
    let mut pos = 0;
    while pos < TP_POSITIONS {
        let mut slot = 0;
        while slot < TP_SLOTS {
            out[n] = Program {
                name: TP_SLOT[pos][slot],
                family: Family::TpBtf,
                role: Role::Slot(slot as u8),
                skb_pos: Some(pos as u8),
                reason_pos: None,
            };
            n += 1;
            slot += 1;
        }
        pos += 1;
    }
    // TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, …)
    out[n] = call(TP_KFREE_SKB, Family::TpBtf, 0, Some(2));
    out[n + 1] = Program {
        name: KRETPROBE_CLONE,
        family: Family::Kretprobe,
        role: Role::Clone,
        skb_pos: None,
        reason_pos: None,
    };
    // skb_clone, skb_copy, … take the skb first.
    out[n + 2] = Program {
        name: FEXIT_CLONE,
        family: Family::Fexit,
        role: Role::Clone,
        skb_pos: Some(0),
        reason_pos: None,
    };
    out[n + 3] = Program {
        name: KRETPROBE_GRAPH,
        family: Family::Kretprobe,
        role: Role::Return,
        skb_pos: None,
        reason_pos: None,
    };
    // Reads the positions from the ARGS map.
    out[n + 4] = Program {
        name: KPROBE_SKB_ANY,
        family: Family::Kprobe,
        role: Role::Call,
        skb_pos: None,
        reason_pos: None,
    };
    n += 5;
    assert!(n == COUNT, "COUNT does not match the programs listed");
    out
}

/// The kprobe program for a function whose skb is argument `skb_pos` and
/// whose drop reason (if it has one) is argument `reason_pos`:
/// `kprobe_skb_{skb}_reason_{reason}` when there is one for that pair,
/// else `kprobe_skb_{skb}` (the drop reason is then not reported). `None`
/// when the skb is not a register argument (`skb_pos >= KPROBE_POSITIONS`).
pub const fn kprobe(skb_pos: u8, reason_pos: Option<u8>) -> Option<&'static str> {
    call_program(Family::Kprobe, skb_pos, reason_pos)
}

/// The fentry program, chosen as [`kprobe`] chooses: `fentry_skb_{skb}`
/// or `fentry_skb_{skb}_reason_{reason}`; `None` when
/// `skb_pos >= FTRACE_POSITIONS`.
pub const fn fentry(skb_pos: u8, reason_pos: Option<u8>) -> Option<&'static str> {
    call_program(Family::Fentry, skb_pos, reason_pos)
}

/// The function_graph fexit program `fexit_skb_{skb}`; `None` when
/// `skb_pos >= FTRACE_POSITIONS`.
pub const fn fexit(skb_pos: u8) -> Option<&'static str> {
    let mut i = 0;
    while i < CATALOG.len() {
        let p = &CATALOG[i];
        if matches!(p.role, Role::Return) && same(p.skb_pos, Some(skb_pos)) {
            return Some(p.name);
        }
        i += 1;
    }
    None
}

/// The tracepoint program `tp_p{pos}_s{slot}`, whose events carry
/// `tracepoint_id(pos, slot)`; `None` when `pos >= TP_POSITIONS` or
/// `slot >= TP_SLOTS`.
pub const fn tracepoint_slot(pos: usize, slot: usize) -> Option<&'static str> {
    match pos < TP_POSITIONS && slot < TP_SLOTS {
        true => Some(TP_SLOT[pos][slot]),
        false => None,
    }
}

/// The catalog entry named `name`.
pub fn find(name: &str) -> Option<&'static Program> {
    CATALOG.iter().find(|p| p.name == name)
}

/// The [`Role::Call`] program of `family` with the skb at `skb_pos`,
/// preferring the one that also reads the drop reason at `reason_pos`.
const fn call_program(family: Family, skb_pos: u8, reason_pos: Option<u8>) -> Option<&'static str> {
    let mut plain = None;
    let mut i = 0;
    while i < CATALOG.len() {
        let p = &CATALOG[i];
        if p.family as u8 == family as u8
            && matches!(p.role, Role::Call)
            && same(p.skb_pos, Some(skb_pos))
        {
            if reason_pos.is_some() && same(p.reason_pos, reason_pos) {
                return Some(p.name);
            }
            if p.reason_pos.is_none() {
                plain = Some(p.name);
            }
        }
        i += 1;
    }
    plain
}

/// `a == b`, which `const fn` cannot write for `Option`.
const fn same(a: Option<u8>, b: Option<u8>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, p) in CATALOG.iter().enumerate() {
            assert!(!p.name.is_empty());
            assert!(
                CATALOG[i + 1..].iter().all(|q| q.name != p.name),
                "{} is listed twice",
                p.name
            );
        }
    }

    #[test]
    fn kernel_names_are_unique_and_cut_at_15_bytes() {
        for (i, p) in CATALOG.iter().enumerate() {
            assert!(p.name.is_ascii());
            assert!(p.name.starts_with(p.kernel_name()));
            assert_eq!(p.kernel_name().len(), p.name.len().min(KERNEL_NAME_LEN));
            assert!(
                CATALOG[i + 1..]
                    .iter()
                    .all(|q| q.kernel_name() != p.kernel_name()),
                "{} and another program look the same to the kernel",
                p.name
            );
            assert_eq!(find_loaded(p.kernel_name()), Some(p));
        }
        assert_eq!(
            find(KRETPROBE_CLONE).unwrap().kernel_name(),
            "kretprobe_clone"
        );
        assert_eq!(
            find_loaded("kprobe_skb_0_re").unwrap().name,
            "kprobe_skb_0_reason_1"
        );
        assert_eq!(find_loaded("kprobe_skb_0_reason_1"), None);
    }

    #[test]
    fn kprobe_names_follow_the_positions() {
        assert_eq!(kprobe(0, None), Some("kprobe_skb_0"));
        assert_eq!(kprobe(5, None), Some("kprobe_skb_5"));
        assert_eq!(kprobe(6, None), None);
        assert_eq!(kprobe(0, Some(1)), Some("kprobe_skb_0_reason_1"));
        assert_eq!(kprobe(1, Some(2)), Some("kprobe_skb_1_reason_2"));
        // No program for this pair: the plain one, without the reason.
        assert_eq!(kprobe(2, Some(3)), Some("kprobe_skb_2"));
        assert_eq!(kprobe(0, Some(2)), Some("kprobe_skb_0"));
    }

    #[test]
    fn ftrace_names_follow_the_positions() {
        assert_eq!(fentry(0, None), Some("fentry_skb_0"));
        assert_eq!(fentry(11, None), Some("fentry_skb_11"));
        assert_eq!(fentry(12, None), None);
        assert_eq!(fentry(1, Some(2)), Some("fentry_skb_1_reason_2"));
        assert_eq!(fentry(3, Some(4)), Some("fentry_skb_3"));
        assert_eq!(fexit(0), Some("fexit_skb_0"));
        assert_eq!(fexit(11), Some("fexit_skb_11"));
        assert_eq!(fexit(12), None);
    }

    #[test]
    fn tracepoint_slots_cover_every_position_and_slot() {
        assert_eq!(tracepoint_slot(0, 0), Some("tp_p0_s0"));
        assert_eq!(tracepoint_slot(4, 31), Some("tp_p4_s31"));
        assert_eq!(tracepoint_slot(5, 0), None);
        assert_eq!(tracepoint_slot(0, 32), None);
        for pos in 0..TP_POSITIONS {
            for slot in 0..TP_SLOTS {
                let name = tracepoint_slot(pos, slot).unwrap();
                assert_eq!(name, format!("tp_p{pos}_s{slot}"));
                let p = find(name).unwrap();
                assert_eq!((p.family, p.role), (Family::TpBtf, Role::Slot(slot as u8)));
                assert_eq!(p.skb_pos, Some(pos as u8));
            }
        }
    }

    #[test]
    fn every_name_says_its_family_and_positions() {
        // The names userspace used to spell by hand, rebuilt from each
        // entry: a table edit that breaks the convention fails here.
        for p in CATALOG {
            let expected = match (p.family, p.role, p.skb_pos, p.reason_pos) {
                (Family::Kprobe | Family::Fentry, Role::Call, Some(s), None) => {
                    format!("{}_skb_{s}", p.family.section())
                }
                (Family::Kprobe | Family::Fentry, Role::Call, Some(s), Some(r)) => {
                    format!("{}_skb_{s}_reason_{r}", p.family.section())
                }
                (Family::Fexit, Role::Return, Some(s), None) => format!("fexit_skb_{s}"),
                (Family::TpBtf, Role::Slot(slot), Some(s), None) => format!("tp_p{s}_s{slot}"),
                (Family::TpBtf, Role::Call, Some(0), Some(2)) => TP_KFREE_SKB.into(),
                (Family::Kretprobe, Role::Clone, None, None) => KRETPROBE_CLONE.into(),
                (Family::Kretprobe, Role::Return, None, None) => KRETPROBE_GRAPH.into(),
                (Family::Fexit, Role::Clone, Some(0), None) => FEXIT_CLONE.into(),
                (Family::Kprobe, Role::Call, None, None) => KPROBE_SKB_ANY.into(),
                _ => panic!("unexpected entry {p:?}"),
            };
            assert_eq!(p.name, expected);
            assert_eq!(find(p.name), Some(p));
        }
        assert_eq!(find("kprobe_skb_6"), None);
    }

    #[test]
    fn args_give_back_their_positions() {
        for skb in 0..KPROBE_POSITIONS as u8 {
            for reason in [None, Some(0), Some(1), Some(5)] {
                assert_eq!(args_positions(args(skb, reason)), (skb, reason));
            }
        }
    }

    #[test]
    fn positions_stay_within_the_families_limits() {
        for p in CATALOG {
            let limit = match p.family {
                Family::Kprobe | Family::Kretprobe => KPROBE_POSITIONS,
                Family::Fentry | Family::Fexit => FTRACE_POSITIONS,
                Family::TpBtf => TP_POSITIONS,
            };
            assert!(p.skb_pos.is_none_or(|pos| (pos as usize) < limit), "{p:?}");
            // kprobes read the reason from a register too; a tracepoint
            // program reads any of its arguments.
            if p.family != Family::TpBtf {
                assert!(
                    p.reason_pos.is_none_or(|pos| (pos as usize) < limit),
                    "{p:?}"
                );
            }
        }
    }
}
