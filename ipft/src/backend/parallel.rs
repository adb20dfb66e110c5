//! Attaching one target per call, from every core at once.
//!
//! Loading a tracing program means a verifier pass and a JIT per function,
//! and creating a kprobe means kernel work per function: done one after the
//! other, a few thousand functions take minutes under emulation. Worker
//! threads take the next target as they finish the last, so the kernel's
//! work runs on every CPU; the caller's thread reports each outcome, so
//! counting, progress and cancellation stay where they were.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
};

use anyhow::Result;

use super::{Done, Link};
use crate::discover::Target;

/// Attaches every target with `attach`, from one thread per CPU, and tells
/// `done` (on this thread, in the order they finish) about each. Once
/// `done` returns false no new target is started; links made meanwhile are
/// dropped, which detaches them.
pub fn attach_all(
    targets: Vec<Target>,
    attach: &(dyn Fn(&Target) -> Result<Vec<Link>> + Sync),
    done: &mut Done<'_>,
) {
    let threads = thread::available_parallelism()
        .map_or(1, usize::from)
        .min(targets.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Vec<Link>>)>();
    thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (targets, next, stop) = (&targets, &next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { break };
                    if tx.send((i, attach(target))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx.iter() {
            if stop.load(Ordering::Relaxed) {
                continue; // cancelled: dropping the links detaches them
            }
            if !done(targets[i].clone(), 0, result) {
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// Tells `done` that every target failed for the same reason (what they
/// all needed could not be prepared).
pub fn fail_all(targets: Vec<Target>, err: &anyhow::Error, done: &mut Done<'_>) {
    let why = format!("{err:#}");
    for target in targets {
        if !done(target, 0, Err(anyhow::anyhow!("{why}"))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{atomic::AtomicUsize, Arc};

    use anyhow::bail;

    use super::*;
    use crate::discover::TargetKind;

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                name: format!("f{i}"),
                module: "vmlinux".into(),
                addr: i as u64,
                skb_pos: 0,
                nargs: 1,
                reason_pos: None,
                kind: TargetKind::Function,
                btf_id: 0,
            })
            .collect()
    }

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_target_is_reported_once_with_its_own_result() {
        let attach = |t: &Target| -> Result<Vec<Link>> {
            match t.addr % 3 {
                0 => bail!("refused {}", t.name),
                _ => Ok(vec![Box::new(t.addr) as Link]),
            }
        };
        let mut seen = Vec::new();
        attach_all(targets(100), &attach, &mut |t, _, result| {
            match result {
                Ok(links) => assert_eq!(*links[0].downcast_ref::<u64>().unwrap(), t.addr),
                Err(e) => assert_eq!(e.to_string(), format!("refused {}", t.name)),
            }
            seen.push(t.addr);
            true
        });
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn cancelling_stops_new_attaches_and_detaches_the_rest() {
        let made = AtomicUsize::new(0);
        let dropped = Arc::new(AtomicUsize::new(0));
        let attach = |_: &Target| -> Result<Vec<Link>> {
            made.fetch_add(1, Ordering::Relaxed);
            thread::sleep(std::time::Duration::from_millis(1));
            Ok(vec![Box::new(Counted(dropped.clone())) as Link])
        };
        let mut kept = Vec::new();
        attach_all(targets(1000), &attach, &mut |_, _, result| {
            kept.extend(result.unwrap());
            kept.len() < 5
        });
        assert_eq!(kept.len(), 5);
        let made = made.load(Ordering::Relaxed);
        assert!(made < 1000, "{made} attached after cancelling");
        // Everything attached but not handed over is already detached.
        assert_eq!(dropped.load(Ordering::Relaxed), made - 5);
    }
}
