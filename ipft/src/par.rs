//! Work on several threads: [`ordered`], the one parallel map that attach,
//! render and detach share, and [`Background`], start-up work that runs
//! while the main thread goes on.
//!
//! Why threads at all: loading a program is a verifier pass and a JIT,
//! creating or removing a probe is kernel work with waits, and a burst's
//! table is tens of MB to format. Done one after the other, each of these
//! takes seconds to minutes under emulation.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Mutex,
    },
    thread::{self, JoinHandle},
};

use anyhow::{anyhow, Context, Result};

/// The machine's CPUs: threads for work that keeps a CPU busy.
pub fn cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// Runs `work` on every item from up to `threads` threads and hands each
/// result to `take`, on this thread, in the items' order. Once `take`
/// returns false no new item starts, and results still coming are dropped
/// (for attach: dropping a link detaches it).
pub fn ordered<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    work: &(dyn Fn(T) -> R + Sync),
    take: &mut dyn FnMut(R) -> bool,
) {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        for item in items {
            if !take(work(item)) {
                return;
            }
        }
        return;
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    thread::scope(|scope| {
        for _ in 0..threads {
            let (tx, queue, stop) = (tx.clone(), &queue, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = queue.lock().map(|mut q| q.next());
                    let Ok(Some((i, item))) = next else { break };
                    if tx.send((i, work(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut early = BTreeMap::new();
        let mut wanted = 0;
        for (i, result) in rx {
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            early.insert(i, result);
            while let Some(result) = early.remove(&wanted) {
                wanted += 1;
                if !take(result) {
                    stop.store(true, Ordering::Relaxed);
                    early.clear();
                    break;
                }
            }
        }
    });
}

/// Work started on another thread, its result taken when needed.
pub struct Background<T> {
    running: Option<JoinHandle<Result<T>>>,
    done: Option<T>,
}

impl<T: Send + 'static> Background<T> {
    pub fn start(work: impl FnOnce() -> Result<T> + Send + 'static) -> Self {
        Background {
            running: Some(thread::spawn(work)),
            done: None,
        }
    }

    /// Waits for the result (once) and lends it.
    pub fn get(&mut self) -> Result<&mut T> {
        if let Some(running) = self.running.take() {
            let result = running
                .join()
                .map_err(|_| anyhow!("a start-up thread panicked"))?;
            self.done = Some(result?);
        }
        self.done.as_mut().context("start-up work failed earlier")
    }

    pub fn take(mut self) -> Result<T> {
        self.get()?;
        self.done.take().context("start-up work failed earlier")
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{atomic::AtomicUsize, Arc},
        time::Duration,
    };

    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_threads() {
        for threads in [1, 2, 7, 64] {
            let items: Vec<u64> = (0..500).collect();
            let work = |i: u64| {
                // Later items finish first.
                thread::sleep(Duration::from_micros(500 - i));
                i * 2
            };
            let mut seen = Vec::new();
            ordered(items, threads, &work, &mut |r| {
                seen.push(r);
                true
            });
            assert_eq!(seen, (0..500).map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn stopping_starts_nothing_new_and_drops_the_rest() {
        let made = AtomicUsize::new(0);
        let dropped = Arc::new(AtomicUsize::new(0));
        let work = |_: usize| {
            made.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(1));
            Counted(Arc::clone(&dropped))
        };
        let mut kept = Vec::new();
        ordered((0..1000).collect(), 4, &work, &mut |r| {
            kept.push(r);
            kept.len() < 5
        });
        assert_eq!(kept.len(), 5);
        let made = made.load(Ordering::Relaxed);
        assert!(made < 1000, "{made} made after stopping");
        // Everything made but not taken is already dropped.
        assert_eq!(dropped.load(Ordering::Relaxed), made - 5);
    }

    #[test]
    fn background_work_is_taken_once() {
        let mut work = Background::start(|| Ok(41));
        *work.get().unwrap() += 1;
        assert_eq!(work.take().unwrap(), 42);
        let failed = Background::<u8>::start(|| Err(anyhow!("no")));
        assert_eq!(failed.take().unwrap_err().to_string(), "no");
    }
}
