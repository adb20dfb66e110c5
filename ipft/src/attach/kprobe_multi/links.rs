//! kprobe-multi links: one link attaches a program to every function of a
//! group ([`attach_functions`]); when the kernel refuses one of them, the
//! functions ftrace does not list are dropped ([`Lazy`], read only then)
//! and the rest halved until the refused ones are found ([`bisect`]).
use std::{
    collections::{HashMap, HashSet},
    io,
    ops::Range,
    os::fd::{BorrowedFd, OwnedFd},
};

use anyhow::{anyhow, Result};

use crate::{
    discover::Target,
    sys::{bpf, perf::Probe},
};

/// The kernel-internal "not supported" errno that bpf() can return.
pub(super) const ENOTSUPP: i32 = 524;

/// ftrace's list of the functions it can trace.
const FILTER_FUNCTIONS: &[&str] = &[
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
];

/// What attaching the functions did.
pub(super) struct Attached {
    pub(super) links: Vec<OwnedFd>,
    /// Address → why that function was not attached.
    pub(super) failed: HashMap<u64, String>,
}

/// Attaches `prog` to the entry, or the return, of every function in
/// `group` with as few links as possible. `traceable` reads ftrace's list
/// only when a link fails.
pub(super) fn attach_functions(
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

/// ftrace's list, read and parsed only if a link fails, once for all
/// groups: with addresses from ftrace's own list (6.5+, see
/// `discover::addresses`) every target is in it, and links do not fail.
pub(super) struct Lazy {
    wanted: HashSet<String>,
    parsed: Option<Option<Traceable>>,
}

impl Lazy {
    pub(super) fn new(targets: &[Target]) -> Self {
        Lazy {
            wanted: targets.iter().map(|t| t.name.clone()).collect(),
            parsed: None,
        }
    }

    /// No ftrace list (tracefs unreadable).
    #[cfg(test)]
    pub(super) fn none() -> Self {
        Lazy {
            wanted: HashSet::new(),
            parsed: Some(None),
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

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, fs::File, os::fd::AsFd, rc::Rc};

    use super::{
        super::tests::{errno, target},
        *,
    };
    use crate::sys::fake;

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
            attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut Lazy::none()).unwrap();
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
            attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut Lazy::none()).unwrap();
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
            ..Lazy::none()
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
        let err = attach_functions(prog.as_fd(), Probe::Entry, &refs(&group), &mut Lazy::none())
            .err()
            .unwrap();
        assert!(err.to_string().contains("of 2 functions failed"), "{err}");
        assert_eq!(fake::calls().len(), 1);
    }

    fn refs(targets: &[Target]) -> Vec<&Target> {
        targets.iter().collect()
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
}
