//! kprobe-multi backend: four links attach every function.
//!
//! Minimum kernel: 5.18 with `CONFIG_FPROBE` (kprobe-multi links, built on
//! ftrace) and `CONFIG_BPF_EVENTS`. The kprobe programs are loaded with
//! the expected attach type `BPF_TRACE_KPROBE_MULTI`, and each is attached
//! to all its functions by one `BPF_LINK_CREATE`: a few system calls
//! instead of one perf kprobe per function, and a few RCU grace periods to
//! detach instead of one per function. Function identity is
//! `bpf_get_func_ip`, the function's address. Module functions work; the
//! skb must be one of the six register arguments, as for kprobes.
//!
//! The functions whose skb is one of the first three arguments (1,600 of
//! 1,700 in 6.12, and the busy ones) get `kprobe_skb_0` to `_2`, which read
//! a fixed register. The rest (a later skb, a drop reason) share
//! `kprobe_skb_any`, which finds its function's positions by identity
//! (`args.rs`): first in the identity's slot of the `ARG_SLOTS` array,
//! a look-up the verifier inlines, else in the `ARGS` hash map. Four
//! links: each link costs start-up time and, at exit, one fprobe
//! unregistration (about 0.15 s under emulation), and the slot look-up is
//! cheap enough for the busy functions at later positions
//! (`ip_generic_getfrag`, the skb sixth, copies every UDP datagram sent):
//! with a hash look-up there, unmatched UDP kept 0.3 % less. Not attach
//! cookies: the kernel finds a cookie by the function's start, and
//! addresses from ftrace's list are its hook, 4 bytes later on kernels with
//! IBT.
//!
//! One function the kernel refuses (e.g. `notrace`, so missing from ftrace's
//! `available_filter_functions`) fails the whole link. The targets come from
//! ftrace's list with addresses where the kernel has it (6.5+), so none is
//! refused; on older kernels the addresses are kallsyms', and a refused
//! link reads ftrace's list to drop the functions it lacks, then halves the
//! set to find any others (`links.rs`); they are counted as failed, with
//! the reason under `-v`.
//!
//! aya 0.14 cannot load a kprobe program with an expected attach type, so
//! this backend loads them itself (`load.rs`, through [`super::programs`]).
//!
//! function_graph adds one return link (`BPF_F_KPROBE_MULTI_RETURN`) of
//! the one program `kretprobe_graph` on every function, made first, so
//! that a function whose return cannot be hooked gets no entry either. The
//! return program runs at every return of every attached function; it
//! reports only the calls whose entry was traced (`ENTERED`, keyed by the
//! call's stack frame: see `ipft_common::Call`).
//!
//! `--track` adds one return link of `kretprobe_clone` on the functions
//! that clone or copy an skb (`skb_clone`, …), which reports the copy of a
//! followed skb so that it is followed too.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b kprobe-multi
//! sudo ipft -m 0x55555555 -b kprobe-multi -t function_graph
//! ```
mod args;
mod links;
mod load;

use std::{
    collections::{BTreeMap, HashMap},
    ffi::CString,
    os::fd::AsFd,
};

use anyhow::{anyhow, Result};

use ipft_common::programs::{
    KPROBE_MULTI_OWN_LINKS, KPROBE_SKB_ANY, KRETPROBE_CLONE, KRETPROBE_GRAPH,
};
use ipft_filter::insn;

use self::{
    args::fill_args,
    links::{attach_functions, Attached, Lazy, ENOTSUPP},
    load::load,
};
use super::{
    functions::identities,
    kprobe::{note_cloners, program, register_argument},
    programs::{Maps, Programs},
    Backend, Link, Report,
};
use crate::{
    discover::{Source, Target, TargetKind},
    sys::{
        bpf::{self, AttachType, ProgType},
        perf::Probe,
    },
};

pub struct KprobeMulti {
    /// function_graph: hook the returns too.
    graph: bool,
}

impl KprobeMulti {
    pub fn new(graph: bool) -> Self {
        KprobeMulti { graph }
    }
}

impl Backend for KprobeMulti {
    fn name(&self) -> &'static str {
        "kprobe-multi"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Function
    }

    fn addresses(&self) -> Source {
        Source::Ftrace
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        register_argument(target)
    }

    fn attach(&mut self, maps: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link> {
        let mut traceable = Lazy::new(&targets);
        let attached = attach_groups(maps, &targets, &mut traceable, self.graph);
        tell(targets, attached, report)
    }

    /// One return link of `kretprobe_clone` on all the cloning functions:
    /// a kretprobe each costs a perf event and an ftrace registration of
    /// its own (0.1 s of start-up for four under emulation; one link, 0.02).
    fn follow_clones(&self, maps: &Maps, cloners: &[Target]) -> Result<(Vec<Link>, usize)> {
        if cloners.is_empty() {
            return Ok((Vec::new(), 0));
        }
        note_cloners(maps, cloners)?;
        let programs = Programs::relocate(maps, |name| name == KRETPROBE_CLONE)?;
        let prog = load(&programs, KRETPROBE_CLONE)?;
        let group: Vec<&Target> = cloners.iter().collect();
        let mut traceable = Lazy::new(cloners);
        let attached = attach_functions(prog.as_fd(), Probe::Return, &group, &mut traceable)?;
        let links = attached.links.into_iter();
        let links = links.map(|l| Box::new(l) as Link).collect();
        Ok((links, attached.failed.len()))
    }
}

/// Attaches each group of targets that share a program (the skb and drop
/// reason at the same positions) with that program's link; with `graph`,
/// the return program first, on all of them.
fn attach_groups(
    maps: &Maps,
    targets: &[Target],
    traceable: &mut Lazy,
    graph: bool,
) -> Result<Attached> {
    let groups = by_program(targets);
    let programs = Programs::relocate(maps, |name| {
        groups.contains_key(name) || (graph && name == KRETPROBE_GRAPH)
    })?;
    let mut all = match graph {
        true => {
            let everything: Vec<&Target> = groups.values().flatten().copied().collect();
            load(&programs, KRETPROBE_GRAPH).and_then(|prog| {
                attach_functions(prog.as_fd(), Probe::Return, &everything, traceable)
            })?
        }
        false => Attached {
            links: Vec::new(),
            failed: HashMap::new(),
        },
    };
    for (name, mut group) in groups {
        // A function whose return is not hooked is not entered either.
        group.retain(|t| !all.failed.contains_key(&t.addr));
        if group.is_empty() {
            continue;
        }
        if name == KPROBE_SKB_ANY {
            if let Err(err) = fill_args(maps, &group) {
                let why = super::reason(&err);
                all.failed
                    .extend(group.iter().map(|t| (t.addr, why.clone())));
                continue;
            }
        }
        // The link holds the program: its fd can close.
        let attached = load(&programs, name)
            .and_then(|prog| attach_functions(prog.as_fd(), Probe::Entry, &group, traceable));
        match attached {
            Ok(attached) => {
                all.links.extend(attached.links);
                all.failed.extend(attached.failed);
            }
            Err(err) => {
                let why = super::reason(&err);
                all.failed
                    .extend(group.iter().map(|t| (t.addr, why.clone())));
            }
        }
    }
    Ok(all)
}

/// The targets by the name of the program that traces them: the first
/// three skb positions their own `kprobe_skb_N`, the rest `kprobe_skb_any`
/// (see the module's header).
fn by_program(targets: &[Target]) -> BTreeMap<&'static str, Vec<&Target>> {
    let mut groups: BTreeMap<&'static str, Vec<&Target>> = BTreeMap::new();
    for target in targets {
        let own = target.reason_pos.is_none() && target.skb_pos < KPROBE_MULTI_OWN_LINKS;
        // check() let in only targets whose skb is a register argument.
        let name = match own {
            true => program(target),
            false => Ok(KPROBE_SKB_ANY),
        };
        if let Ok(name) = name {
            groups.entry(name).or_default().push(target);
        }
    }
    groups
}

/// Tells `report` each target's outcome; returns the links when at least
/// one target attached (they cover all attached targets).
fn tell(group: Vec<Target>, attached: Result<Attached>, report: &mut Report<'_>) -> Vec<Link> {
    let (links, failed): (Vec<Link>, _) = match attached {
        Ok(a) => (
            a.links.into_iter().map(|l| Box::new(l) as Link).collect(),
            Ok(a.failed),
        ),
        Err(err) => (Vec::new(), Err(super::reason(&err))),
    };
    let mut any = false;
    for target in group {
        let why = match &failed {
            Ok(failed) => failed.get(&target.addr).cloned(),
            Err(why) => Some(why.clone()),
        };
        let outcome = match why {
            Some(why) => Err(anyhow!(why)),
            None => Ok(identities(&target)),
        };
        any |= outcome.is_ok();
        if !report(target, outcome) {
            break;
        }
    }
    match any {
        true => links,
        false => Vec::new(),
    }
}

/// Whether this kernel has kprobe-multi links. Returns why not, without
/// naming a backend (the caller does).
///
/// Loads a two-instruction program for them and asks for a link on an
/// address the kernel cannot read: EFAULT means it went as far as reading
/// the addresses, so it has kprobe-multi links, and nothing was attached.
/// (Asking for a function that does not exist would do too, but the kernel
/// searches all of kallsyms for it: 0.15 s under emulation.)
pub fn probe() -> Result<(), String> {
    let insns = [insn::mov64_imm(0, 0), insn::exit()];
    let license = CString::new("GPL").expect("no NUL");
    let program = bpf::Program {
        prog_type: ProgType::Kprobe,
        expected_attach_type: AttachType::TraceKprobeMulti,
        name: "ipft_probe",
        insns: &insns,
        license: &license,
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    let prog = bpf::prog_load(&program, &mut []).map_err(|err| match err.raw_os_error() {
        Some(libc::EPERM) => "loading a kprobe program is refused (EPERM)".to_string(),
        Some(libc::EINVAL) => {
            "no kprobe programs (CONFIG_KPROBES or CONFIG_BPF_EVENTS is off)".into()
        }
        _ => format!("loading a kprobe program failed ({err})"),
    })?;
    let err = bpf::link_create_kprobe_multi_unreadable(prog.as_fd());
    match err.raw_os_error() {
        Some(libc::EFAULT) => Ok(()),
        Some(libc::EINVAL) => Err("no fprobe links (kernel older than 5.18)".into()),
        Some(libc::EOPNOTSUPP | ENOTSUPP) => Err("no fprobe (CONFIG_FPROBE is off)".into()),
        _ => Err(format!("an fprobe link failed ({err})")),
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, fs::File, io, rc::Rc};

    use super::*;
    use crate::sys::fake;

    pub(super) fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    pub(super) fn target(name: &str, module: &str, addr: u64) -> Target {
        Target {
            name: name.into(),
            module: module.into(),
            addr,
            address: Default::default(),
            skb_pos: 0,
            reason_pos: None,
            nargs: 1,
            kind: TargetKind::Function,
            btf_id: 0,
            returns: crate::discover::Returns::Nothing,
        }
    }

    #[test]
    fn common_layouts_get_a_program_each_the_rest_share_one_and_no_cookies() {
        let cookies = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::clone(&cookies);
        fake::answer(move |_, attr| {
            seen.borrow_mut().push(fake::u64_at(attr, 40));
            Ok(())
        });
        let mut drop = target("sk_skb_reason_drop", "vmlinux", 0x10);
        (drop.skb_pos, drop.reason_pos) = (1, Some(2));
        let mut rcv = target("ip_rcv", "vmlinux", 0x20);
        rcv.skb_pos = 3;
        let mut xmit = target("dev_hard_start_xmit", "vmlinux", 0x30);
        xmit.skb_pos = 3;
        let mut out = target("ip_output", "vmlinux", 0x40);
        out.skb_pos = 2;
        let targets = [rcv, drop, xmit, out];
        let groups = by_program(&targets);
        let names: Vec<(&str, usize)> = groups.iter().map(|(n, g)| (*n, g.len())).collect();
        assert_eq!(names, [("kprobe_skb_2", 1), ("kprobe_skb_any", 3)]);
        let prog = File::open("/dev/null").unwrap();
        attach_functions(
            prog.as_fd(),
            Probe::Entry,
            &groups["kprobe_skb_any"],
            &mut Lazy::none(),
        )
        .unwrap();
        assert_eq!(*cookies.borrow(), [0], "no cookie array");
    }

    #[test]
    fn tell_reports_each_target_and_keeps_the_links() {
        let group = vec![
            target("a", "vmlinux", 1),
            target("b", "vmlinux", 2),
            target("c", "vmlinux", 3),
        ];
        let attached = Attached {
            links: vec![File::open("/dev/null").unwrap().into()],
            failed: HashMap::from([(1, "refused".to_string())]),
        };
        let mut seen = Vec::new();
        let links = tell(group, Ok(attached), &mut |t, outcome| {
            seen.push((t.name, outcome.map_err(|e| e.to_string())));
            true
        });
        assert_eq!(
            seen,
            [
                ("a".into(), Err("refused".into())),
                ("b".into(), Ok(vec![2, 6])),
                ("c".into(), Ok(vec![3, 7])),
            ]
        );
        assert_eq!(links.len(), 1);
    }

    #[test]
    fn tell_stops_when_asked() {
        let group = vec![target("a", "vmlinux", 1), target("b", "vmlinux", 2)];
        let mut n = 0;
        let links = tell(group, Err(anyhow!("no program")), &mut |_, outcome| {
            assert!(outcome.is_err());
            n += 1;
            false
        });
        assert_eq!((n, links.len()), (1, 0));
    }

    /// A fake kernel for [`probe`]: loads work, links answer `errnos` in turn.
    fn fake_links(errnos: &'static [i32]) {
        let mut next = errnos.iter();
        fake::answer(move |cmd, _| match cmd {
            5 => Ok(()), // BPF_PROG_LOAD
            _ => match next.next() {
                Some(&errno) if errno != 0 => Err(io::Error::from_raw_os_error(errno)),
                _ => Ok(()),
            },
        });
    }

    #[test]
    fn probe_reads_the_kernels_answer() {
        fake_links(&[libc::EFAULT]);
        assert_eq!(probe(), Ok(()));
        fake_links(&[libc::EINVAL]);
        assert_eq!(
            probe(),
            Err("no fprobe links (kernel older than 5.18)".into())
        );
        fake_links(&[libc::EOPNOTSUPP]);
        assert_eq!(probe(), Err("no fprobe (CONFIG_FPROBE is off)".into()));
        // A link the kernel made anyway would be closed, not trusted.
        fake_links(&[0]);
        assert!(probe().unwrap_err().contains("unreadable"));
        fake::answer(|_, _| Err(errno(libc::EPERM)));
        assert_eq!(
            probe(),
            Err("loading a kprobe program is refused (EPERM)".into())
        );
    }
}
