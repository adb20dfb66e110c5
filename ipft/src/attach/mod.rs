//! Attach: hooks ipft's programs to the discovered targets through one
//! [`Backend`], counts what happened, and stops early when asked to.
//!
//! Takes the targets, the created maps ([`programs::Maps`]) and a
//! [`Watch`] for progress; gives [`Attached`]: the links (dropping them, or
//! [`detach`], detaches), the targets that attached and the index from an
//! event's function identity to its target. A backend is one file here
//! and one arm of [`choose::build`].
pub mod choose;
pub mod detach;
pub mod filter;
mod ftrace;
mod functions;
mod kprobe;
mod kprobe_multi;
pub mod programs;
mod tracepoint;
pub mod track;

use std::{any::Any, collections::HashMap, io};

use anyhow::Result;

use crate::discover::{Source, Target, TargetKind};
use programs::Maps;

/// Keeps programs attached; dropping it detaches.
pub type Link = Box<dyn Any + Send>;

/// One target's outcome: the function identities its events carry (what
/// the programs put in `Event::func`), or why it could not be attached.
pub type Outcome = Result<Vec<u64>>;

/// Receives each target's outcome as it is known. Returns false to stop
/// attaching (the user cancelled).
pub type Report<'a> = dyn FnMut(Target, Outcome) -> bool + 'a;

/// How programs reach the kernel.
pub trait Backend: Send {
    /// The name users pass to `-b`.
    fn name(&self) -> &'static str;
    /// Which kind of target this backend traces.
    fn target_kind(&self) -> TargetKind;
    /// Where this backend's function addresses come from: kallsyms (the
    /// default), or ftrace's list for backends that hook through ftrace.
    fn addresses(&self) -> Source {
        Source::Kallsyms
    }
    /// Why this backend cannot trace `target`, if it cannot.
    fn check(&self, target: &Target) -> Result<(), &'static str>;
    /// Attaches every target, telling `report` about each. Returns the
    /// links of the targets reported as attached.
    fn attach(&mut self, maps: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link>;
    /// `--track`: hooks the returns of `cloners` (skb_clone, …), so that
    /// their copies are followed. Returns the links and how many failed.
    fn follow_clones(&self, maps: &Maps, cloners: &[Target]) -> Result<(Vec<Link>, usize)>;
}

/// The numbers of ipftrace2's `Attaching program (...)` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub filtered: usize,
}

/// Told about attaching as it goes (the terminal's progress line, `-v`).
pub trait Watch {
    fn counts(&mut self, counts: &Counts);
    fn failed(&mut self, target: &Target, why: &str);
}

/// What is attached: the links (dropping them detaches), the targets that
/// succeeded, and how to map an event's function identity to a target.
pub struct Attached {
    pub links: Vec<Link>,
    pub targets: Vec<Target>,
    /// Event `func` (address or tracepoint id) → index into `targets`.
    pub index: HashMap<u64, u32>,
    pub counts: Counts,
    /// Why targets failed: short reason → how many.
    pub failures: HashMap<String, usize>,
    /// The first failure's full reason, for the error when nothing attached.
    pub first_error: Option<String>,
    pub cancelled: bool,
}

/// Attaches every target in `targets` (already filtered by `-r`), counting
/// `filtered` ones as such. `cancelled` is asked after each target.
pub fn attach_all(
    backend: &mut dyn Backend,
    maps: &Maps,
    targets: Vec<Target>,
    filtered: usize,
    cancelled: &dyn Fn() -> bool,
    watch: &mut dyn Watch,
) -> Attached {
    let mut out = Attached {
        links: Vec::new(),
        targets: Vec::with_capacity(targets.len()),
        index: HashMap::with_capacity(targets.len() * 2),
        counts: Counts {
            total: targets.len() + filtered,
            filtered,
            ..Counts::default()
        },
        failures: HashMap::new(),
        first_error: None,
        cancelled: false,
    };
    watch.counts(&out.counts);
    let pause = crate::testhook::attach_pause();
    let links = backend.attach(maps, targets, &mut |target, outcome| {
        out.take(target, outcome, watch);
        if let Some(pause) = pause {
            std::thread::sleep(pause);
        }
        out.cancelled = cancelled();
        !out.cancelled
    });
    out.links = links;
    out
}

impl Attached {
    /// Counts one target's outcome.
    fn take(&mut self, target: Target, outcome: Outcome, watch: &mut dyn Watch) {
        match outcome {
            Ok(identities) => {
                let idx = self.targets.len() as u32;
                for id in identities {
                    self.index.entry(id).or_insert(idx);
                }
                self.targets.push(target);
                self.counts.succeeded += 1;
            }
            Err(err) => {
                let why = reason(&err);
                watch.failed(&target, &why);
                *self.failures.entry(short_reason(&err)).or_default() += 1;
                self.first_error.get_or_insert(why);
                self.counts.failed += 1;
            }
        }
        watch.counts(&self.counts);
    }

    /// One line saying why targets failed, the commonest reasons first:
    /// `686 failed: 650 too many open files, 36 invalid argument`.
    pub fn failure_summary(&self) -> Option<String> {
        if self.counts.failed == 0 {
            return None;
        }
        let mut reasons: Vec<(&String, &usize)> = self.failures.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = match reasons.as_slice() {
            [(why, _)] => vec![why.to_string()],
            many => many
                .iter()
                .take(3)
                .map(|(why, n)| format!("{n} {why}"))
                .collect(),
        };
        let more = match reasons.len().saturating_sub(3) {
            0 => String::new(),
            n => format!(", {n} other reasons"),
        };
        Some(format!(
            "{} failed: {}{more} (-v names each)",
            self.counts.failed,
            shown.join(", ")
        ))
    }
}

/// Turns an error chain into one reason for `-v` and messages.
pub fn reason(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The cause of a failure, short enough to count: the system error's text
/// (`too many open files`), else the innermost message.
fn short_reason(err: &anyhow::Error) -> String {
    let text = match err.chain().find_map(|e| e.downcast_ref::<io::Error>()) {
        Some(io) => io.to_string(),
        None => err.root_cause().to_string(),
    };
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown reason".into(),
    }
}

#[cfg(test)]
mod tests {
    use anyhow::{anyhow, Context};

    use super::*;
    use crate::discover::tests::candidate;

    /// A backend whose outcome per target is given.
    struct Fake(Vec<Outcome>);

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn target_kind(&self) -> TargetKind {
            TargetKind::Function
        }
        fn check(&self, _: &Target) -> Result<(), &'static str> {
            Ok(())
        }
        fn attach(&mut self, _: &Maps, targets: Vec<Target>, report: &mut Report<'_>) -> Vec<Link> {
            let mut links: Vec<Link> = Vec::new();
            for (target, outcome) in targets.into_iter().zip(self.0.drain(..)) {
                let ok = outcome.is_ok();
                if !report(target, outcome) {
                    break;
                }
                if ok {
                    links.push(Box::new(()));
                }
            }
            links
        }
        fn follow_clones(&self, _: &Maps, _: &[Target]) -> Result<(Vec<Link>, usize)> {
            Ok((Vec::new(), 0))
        }
    }

    struct Quiet;

    impl Watch for Quiet {
        fn counts(&mut self, _: &Counts) {}
        fn failed(&mut self, _: &Target, _: &str) {}
    }

    fn emfile() -> anyhow::Error {
        anyhow::Error::new(io::Error::from_raw_os_error(libc::EMFILE))
            .context("kprobe attach failed")
    }

    fn attach(outcomes: Vec<Outcome>, cancel_after: usize) -> Attached {
        let targets = (0..outcomes.len())
            .map(|i| candidate(&format!("f{i}"), "vmlinux").target)
            .collect();
        let maps = Maps::empty();
        let asked = std::cell::Cell::new(0);
        let cancelled = || {
            asked.set(asked.get() + 1);
            asked.get() >= cancel_after
        };
        attach_all(
            &mut Fake(outcomes),
            &maps,
            targets,
            2,
            &cancelled,
            &mut Quiet,
        )
    }

    #[test]
    fn counts_index_and_summary() {
        let outcomes = vec![
            Ok(vec![0x10, 0x14]),
            Err(emfile()),
            Err(emfile()),
            Err(anyhow!("notrace").context("kprobe-multi attach failed")),
            Ok(vec![0x20]),
        ];
        let attached = attach(outcomes, usize::MAX);
        let counts = Counts {
            total: 7,
            succeeded: 2,
            failed: 3,
            filtered: 2,
        };
        assert_eq!(attached.counts, counts);
        assert_eq!(
            attached.index,
            HashMap::from([(0x10, 0), (0x14, 0), (0x20, 1)])
        );
        assert_eq!(attached.links.len(), 2);
        assert_eq!(
            attached.failure_summary().unwrap(),
            "3 failed: 2 too many open files, 1 notrace (-v names each)"
        );
        assert_eq!(
            attached.first_error.unwrap(),
            "kprobe attach failed: Too many open files (os error 24)"
        );
    }

    #[test]
    fn one_reason_is_said_once() {
        let attached = attach(vec![Err(emfile()), Ok(vec![1])], usize::MAX);
        assert_eq!(
            attached.failure_summary().unwrap(),
            "1 failed: too many open files (-v names each)"
        );
        let fine = attach(vec![Ok(vec![1])], usize::MAX);
        assert_eq!(fine.failure_summary(), None);
    }

    #[test]
    fn cancelling_stops_at_once() {
        let attached = attach(vec![Ok(vec![1]), Ok(vec![2]), Ok(vec![3])], 1);
        assert!(attached.cancelled);
        assert_eq!(attached.counts.succeeded, 1);
        let err = anyhow!("x").context("y");
        assert_eq!(short_reason(&err), "x");
        let err: anyhow::Result<()> = Err(io::Error::other("Boom")).context("load");
        assert_eq!(short_reason(&err.unwrap_err()), "boom");
    }
}
