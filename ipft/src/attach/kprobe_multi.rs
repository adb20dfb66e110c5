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
//! ([`fill_args`]): first in the identity's slot of the `ARG_SLOTS` array,
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
//! set to find any others ([`bisect`]); they are counted as failed, with
//! the reason under `-v`.
//!
//! aya 0.14 cannot load a kprobe program with an expected attach type, so
//! this backend loads them itself ([`super::programs`]).
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
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::CString,
    io,
    ops::Range,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use anyhow::{anyhow, Context, Result};

use ipft_common::programs::{self as catalog, KPROBE_SKB_ANY, KRETPROBE_CLONE, KRETPROBE_GRAPH};

use super::{
    functions::identities,
    kprobe::{note_cloners, program, register_argument},
    programs::{self, Maps, Programs},
    Backend, Link, Report,
};
use crate::{
    discover::{Source, Target, TargetKind},
    sys::{
        bpf::{self, AttachType, Insn, ProgType},
        perf::Probe,
    },
};

/// The kernel-internal "not supported" errno that bpf() can return.
const ENOTSUPP: i32 = 524;

/// ftrace's list of the functions it can trace.
const FILTER_FUNCTIONS: &[&str] = &[
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
];

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
        let own = target.reason_pos.is_none() && target.skb_pos < catalog::KPROBE_MULTI_OWN_LINKS;
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

/// Tells `kprobe_skb_any` where the skb and drop reason of each function
/// of `group` are, before its link makes it run: in the identity's slot
/// of `ARG_SLOTS` when it is free, else in `ARGS`.
fn fill_args(maps: &Maps, group: &[&Target]) -> Result<()> {
    let mut taken = HashSet::new();
    for target in group {
        let args = catalog::args(target.skb_pos, target.reason_pos);
        for id in identities(target) {
            let slot = ipft_common::arg_slot(id);
            let result = match taken.insert(slot) {
                true => maps.update(
                    ipft_common::maps::ARG_SLOTS.name,
                    &slot.to_ne_bytes(),
                    &arg_slot(id, args),
                ),
                false => maps.update(
                    ipft_common::maps::ARGS.name,
                    &id.to_ne_bytes(),
                    &args.to_ne_bytes(),
                ),
            };
            result.context("cannot fill the ARG_SLOTS and ARGS maps")?;
        }
    }
    Ok(())
}

/// The bytes of an `ipft_common::ArgSlot`.
fn arg_slot(func: u64, args: u16) -> Vec<u8> {
    let mut bytes = func.to_ne_bytes().to_vec();
    bytes.extend(args.to_ne_bytes());
    bytes.resize(std::mem::size_of::<ipft_common::ArgSlot>(), 0);
    bytes
}

/// Loads kprobe program `name` for kprobe-multi links (an empty program
/// instead under the test hook `empty-program`, for the benchmark's floor).
fn load(programs: &Programs, name: &str) -> Result<OwnedFd> {
    let empty = [Insn::mov64_imm(0, 0), Insn::exit()];
    let program = bpf::Program {
        prog_type: ProgType::Kprobe,
        expected_attach_type: AttachType::TraceKprobeMulti,
        name,
        insns: match crate::testhook::empty_program() {
            true => &empty,
            false => programs.insns(name)?,
        },
        license: &programs.license,
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    programs::load(&program).map_err(|(err, log)| {
        anyhow::Error::new(err)
            .context(format!("verifier log: {log}"))
            .context(format!(
                "the kernel refused the {name} program (try -b kprobe)"
            ))
    })
}

/// What attaching the functions did.
struct Attached {
    links: Vec<OwnedFd>,
    /// Address → why that function was not attached.
    failed: HashMap<u64, String>,
}

/// Attaches `prog` to the entry, or the return, of every function in
/// `group` with as few links as possible. `traceable` reads ftrace's list
/// only when a link fails.
fn attach_functions(
    prog: BorrowedFd<'_>,
    at: Probe,
    group: &[&Target],
    traceable: &mut Lazy,
) -> Result<Attached> {
    let mut funcs: Vec<u64> = group.iter().map(|t| t.addr).collect();
    funcs.sort_unstable();
    funcs.dedup();
    let mut attach = |chunk: &[u64]| bpf::link_create_kprobe_multi(prog, at, chunk, &[]);
    let err = match attach(&funcs) {
        Ok(link) => {
            return Ok(Attached {
                links: vec![link],
                failed: HashMap::new(),
            })
        }
        Err(err) => err,
    };
    if !blames_a_function(&err) {
        return Err(anyhow!(link_error(&err, funcs.len())));
    }
    // Some function is refused: drop those ftrace does not list, then find
    // any others by halving.
    let mut failed = HashMap::new();
    if let Some(traceable) = traceable.get() {
        let untraceable: HashSet<u64> = group
            .iter()
            .filter(|t| !traceable.contains(t))
            .map(|t| t.addr)
            .collect();
        funcs.retain(|addr| !untraceable.contains(addr));
        for addr in untraceable {
            failed.insert(
                addr,
                "ftrace cannot trace it (not in available_filter_functions)".into(),
            );
        }
    }
    let found = bisect(&funcs, &mut attach);
    for (range, err) in &found.failed {
        for &addr in &funcs[range.clone()] {
            failed.insert(addr, link_error(err, range.len()));
        }
    }
    Ok(Attached {
        links: found.links,
        failed,
    })
}

/// One sentence for a refused link of `count` functions.
fn link_error(err: &io::Error, count: usize) -> String {
    match err.raw_os_error() {
        Some(libc::EINVAL) if count == 1 => {
            format!("kprobe-multi attach failed ({err}): the kernel cannot trace this function (notrace, or not in ftrace's available_filter_functions)")
        }
        _ => format!("kprobe-multi attach of {count} functions failed ({err}): try -b kprobe"),
    }
}

/// Whether a failed link can be the fault of one of its functions, so that
/// attaching fewer functions may succeed. Errors about the caller or the
/// kernel as a whole (no permission, no memory, too many functions, no
/// fprobe) cannot, and end the search at once instead of costing two calls
/// per function.
fn blames_a_function(err: &io::Error) -> bool {
    !matches!(
        err.raw_os_error(),
        Some(
            libc::EPERM
                | libc::EACCES
                | libc::ENOMEM
                | libc::E2BIG
                | libc::EOPNOTSUPP
                | ENOTSUPP
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOSYS
                | libc::EBADF
                | libc::EFAULT
        )
    )
}

/// What [`bisect`] found: links covering the good items, and the ranges of
/// items (indices) that failed, each with its error.
struct Bisected<L> {
    links: Vec<L>,
    failed: Vec<(Range<usize>, io::Error)>,
}

/// Attaches `items` with one `attach` call when all are good. A call that
/// fails because of some item ([`blames_a_function`]) is retried on each
/// half, down to single items, which are then known bad: k bad items among
/// n cost about 2·k·log2(n) calls and leave at most that many links. An
/// error no item causes fails the whole slice at once.
fn bisect<T, L>(items: &[T], attach: &mut dyn FnMut(&[T]) -> io::Result<L>) -> Bisected<L> {
    let mut out = Bisected {
        links: Vec::new(),
        failed: Vec::new(),
    };
    bisect_range(items, 0..items.len(), attach, &mut out);
    out
}

fn bisect_range<T, L>(
    items: &[T],
    range: Range<usize>,
    attach: &mut dyn FnMut(&[T]) -> io::Result<L>,
    out: &mut Bisected<L>,
) {
    if range.is_empty() {
        return;
    }
    match attach(&items[range.clone()]) {
        Ok(link) => out.links.push(link),
        Err(err) if range.len() == 1 || !blames_a_function(&err) => out.failed.push((range, err)),
        Err(_) => {
            let mid = range.start + range.len() / 2;
            bisect_range(items, range.start..mid, attach, out);
            bisect_range(items, mid..range.end, attach, out);
        }
    }
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

/// ftrace's list, read and parsed only if a link fails, once for all
/// groups: with addresses from ftrace's own list (6.5+, see
/// `discover::addresses`) every target is in it, and links do not fail.
struct Lazy {
    wanted: HashSet<String>,
    parsed: Option<Option<Traceable>>,
}

impl Lazy {
    fn new(targets: &[Target]) -> Self {
        Lazy {
            wanted: targets.iter().map(|t| t.name.clone()).collect(),
            parsed: None,
        }
    }

    /// The list, or `None` when tracefs is not readable.
    fn get(&mut self) -> Option<&Traceable> {
        let wanted = &self.wanted;
        self.parsed
            .get_or_insert_with(|| {
                let text = read_filter_functions()?;
                let wanted = wanted.iter().map(String::as_str).collect();
                Some(Traceable::parse(&text, &wanted))
            })
            .as_ref()
    }
}

/// ftrace's traceable functions among the ones ipft wants, as
/// (module, name); `vmlinux` for the core kernel.
struct Traceable(HashSet<(String, String)>);

impl Traceable {
    /// Parses `available_filter_functions` (`name` or `name [module]`
    /// lines), keeping only names in `wanted`: the list has some 40,000.
    fn parse(text: &str, wanted: &HashSet<&str>) -> Self {
        let set = text
            .lines()
            .filter_map(|line| {
                let (name, module) = match line.split_once(' ') {
                    Some((name, module)) => (name, module.trim_matches(['[', ']'])),
                    None => (line, "vmlinux"),
                };
                wanted
                    .contains(name)
                    .then(|| (module.to_string(), name.to_string()))
            })
            .collect();
        Traceable(set)
    }

    fn contains(&self, target: &Target) -> bool {
        self.0
            .contains(&(target.module.clone(), target.name.clone()))
    }
}

/// ftrace's list, or `None` when tracefs is not readable.
fn read_filter_functions() -> Option<String> {
    FILTER_FUNCTIONS
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
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
    let insns = [Insn::mov64_imm(0, 0), Insn::exit()];
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
    use std::{cell::RefCell, fs::File, rc::Rc};

    use super::*;
    use crate::sys::bpf::fake;

    fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    /// A fake kernel: refuses any set containing a bad item with EINVAL.
    fn fake_attach<'a>(
        bad: &'a [u32],
        calls: &'a RefCell<Vec<Vec<u32>>>,
    ) -> impl FnMut(&[u32]) -> io::Result<Vec<u32>> + 'a {
        move |chunk: &[u32]| {
            calls.borrow_mut().push(chunk.to_vec());
            if chunk.iter().any(|i| bad.contains(i)) {
                Err(errno(libc::EINVAL))
            } else {
                Ok(chunk.to_vec())
            }
        }
    }

    #[test]
    fn bisect_finds_each_bad_item_and_attaches_the_rest() {
        let items: Vec<u32> = (0..1000).collect();
        let bad = [3, 500, 501, 999];
        let calls = RefCell::new(Vec::new());
        let found = bisect(&items, &mut fake_attach(&bad, &calls));
        let mut failed: Vec<usize> = found.failed.iter().flat_map(|(r, _)| r.clone()).collect();
        failed.sort_unstable();
        assert_eq!(failed, [3, 500, 501, 999]);
        let mut attached: Vec<u32> = found.links.concat();
        attached.sort_unstable();
        assert_eq!(
            attached,
            items
                .iter()
                .copied()
                .filter(|i| !bad.contains(i))
                .collect::<Vec<_>>()
        );
        // About 2·k·log2(n): far fewer calls than items.
        assert!(
            calls.borrow().len() <= 2 * bad.len() * 10 + 1,
            "{} calls",
            calls.borrow().len()
        );
    }

    #[test]
    fn bisect_uses_one_call_when_all_are_good() {
        let items: Vec<u32> = (0..1456).collect();
        let calls = RefCell::new(Vec::new());
        let found = bisect(&items, &mut fake_attach(&[], &calls));
        assert_eq!(calls.borrow().len(), 1);
        assert_eq!(found.links.len(), 1);
        assert!(found.failed.is_empty());
    }

    #[test]
    fn bisect_stops_at_errors_no_item_causes() {
        let items: Vec<u32> = (0..64).collect();
        let mut calls = 0;
        let found: Bisected<()> = bisect(&items, &mut |_| {
            calls += 1;
            Err(errno(libc::EPERM))
        });
        assert_eq!(calls, 1);
        assert_eq!(found.failed.len(), 1);
        assert_eq!(found.failed[0].0, 0..64);
    }

    #[test]
    fn bisect_of_nothing_makes_no_call() {
        let found: Bisected<()> = bisect(&[] as &[u32], &mut |_| panic!("called"));
        assert!(found.links.is_empty() && found.failed.is_empty());
    }

    #[test]
    fn bisect_marks_everything_bad_when_every_item_is() {
        let items: Vec<u32> = (0..5).collect();
        let calls = RefCell::new(Vec::new());
        let found = bisect(&items, &mut fake_attach(&items, &calls));
        assert!(found.links.is_empty());
        assert_eq!(found.failed.iter().map(|(r, _)| r.len()).sum::<usize>(), 5);
    }

    fn target(name: &str, module: &str, addr: u64) -> Target {
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

    /// A fake kernel for [`attach_functions`]: refuses links containing
    /// `bad` addresses with EINVAL; records each link's addresses.
    fn fake_kernel(bad: &'static [u64]) -> Rc<RefCell<Vec<Vec<u64>>>> {
        let links = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::clone(&links);
        fake::answer(move |_, attr| {
            // SAFETY: runs during the call, while the address array is alive.
            let addrs = unsafe { fake::kprobe_multi_addrs(attr) };
            seen.borrow_mut().push(addrs.clone());
            match addrs.iter().any(|a| bad.contains(a)) {
                true => Err(errno(libc::EINVAL)),
                false => Ok(()),
            }
        });
        links
    }

    #[test]
    fn one_link_attaches_every_function() {
        let calls = fake_kernel(&[]);
        let prog = File::open("/dev/null").unwrap();
        let group = [
            target("ip_rcv", "vmlinux", 0x20),
            target("veth_xmit", "veth", 0x10),
        ];
        let attached =
            attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut no_list()).unwrap();
        assert_eq!(attached.links.len(), 1);
        assert!(attached.failed.is_empty());
        assert_eq!(*calls.borrow(), [vec![0x10, 0x20]]);
    }

    #[test]
    fn refused_functions_are_found_and_the_rest_attached() {
        let _calls = fake_kernel(&[0x30, 0x50]);
        let prog = File::open("/dev/null").unwrap();
        let group: Vec<Target> = (1..=8)
            .map(|i| target(&format!("f{i}"), "vmlinux", i * 0x10))
            .collect();
        let attached =
            attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut no_list()).unwrap();
        let mut failed: Vec<u64> = attached.failed.keys().copied().collect();
        failed.sort_unstable();
        assert_eq!(failed, [0x30, 0x50]);
        assert!(attached.failed[&0x30].contains("cannot trace this function"));
        assert!(!attached.links.is_empty());
    }

    #[test]
    fn ftrace_list_drops_untraceable_functions_first() {
        let calls = fake_kernel(&[0x20]);
        let prog = File::open("/dev/null").unwrap();
        let group = [
            target("good", "vmlinux", 0x10),
            target("notraced", "vmlinux", 0x20),
        ];
        let wanted = HashSet::from(["good", "notraced"]);
        let mut list = Lazy {
            parsed: Some(Some(Traceable::parse("good\nother [veth]\n", &wanted))),
            ..no_list()
        };
        let attached =
            attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut list).unwrap();
        assert!(attached.failed[&0x20].contains("available_filter_functions"));
        assert_eq!(attached.links.len(), 1);
        // The full set, then only the traceable function.
        assert_eq!(*calls.borrow(), [vec![0x10, 0x20], vec![0x10]]);
    }

    #[test]
    fn whole_link_errors_fail_the_group_at_once() {
        fake::answer(|_, _| Err(errno(libc::EPERM)));
        let prog = File::open("/dev/null").unwrap();
        let group = [target("a", "vmlinux", 0x10), target("b", "vmlinux", 0x20)];
        let err = attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut no_list())
            .err()
            .unwrap();
        assert!(err.to_string().contains("of 2 functions failed"), "{err}");
        assert_eq!(fake::calls().len(), 1);
    }

    fn refs(targets: &[Target]) -> Vec<&Target> {
        targets.iter().collect()
    }

    /// No ftrace list (tracefs unreadable).
    fn no_list() -> Lazy {
        Lazy {
            wanted: HashSet::new(),
            parsed: Some(None),
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
            &mut no_list(),
        )
        .unwrap();
        assert_eq!(*cookies.borrow(), [0], "no cookie array");
    }

    /// Each identity gets its slot, or the hash map when another took it;
    /// the slot's bytes are an `ArgSlot`.
    #[test]
    fn args_go_to_free_slots_then_to_the_hash_map() {
        let bytes = arg_slot(0xffffffff81a00010, 0x0201);
        assert_eq!(bytes.len(), std::mem::size_of::<ipft_common::ArgSlot>());
        assert_eq!(&bytes[..8], &0xffffffff81a00010u64.to_ne_bytes());
        assert_eq!(&bytes[8..10], &0x0201u16.to_ne_bytes());
        // 16 KiB apart: the same slot; 4 bytes apart: the next one.
        let a = ipft_common::arg_slot(0xffffffff81a00010);
        assert_eq!(a, ipft_common::arg_slot(0xffffffff81a04010));
        assert_eq!(a + 1, ipft_common::arg_slot(0xffffffff81a00014));
    }

    #[test]
    fn filter_functions_parse_with_modules() {
        let wanted = HashSet::from(["ip_rcv", "veth_xmit", "kfree_skb"]);
        let list = Traceable::parse("ip_rcv\nveth_xmit [veth]\n__traceiter_x\n", &wanted);
        assert!(list.contains(&target("ip_rcv", "vmlinux", 0)));
        assert!(list.contains(&target("veth_xmit", "veth", 0)));
        assert!(!list.contains(&target("veth_xmit", "vmlinux", 0)));
        assert!(!list.contains(&target("kfree_skb", "vmlinux", 0)));
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
