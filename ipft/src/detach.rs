//! Detaching: dropping every link, in parallel.
//!
//! The kernel waits for an RCU grace period (tens to hundreds of
//! milliseconds) when a kprobe or trampoline goes away; one link after the
//! other that is minutes for a few thousand functions. Closing them from
//! several threads lets those waits overlap.
use std::thread;

use crate::backend::Link;

/// Threads used to detach: waits overlap, they do not need CPUs.
const THREADS: usize = 32;
/// Below this many links one thread is as quick as many.
const PER_THREAD_MIN: usize = 16;

/// Drops every link; returns once all are detached.
pub fn detach_all(mut links: Vec<Link>) {
    let threads = (links.len() / PER_THREAD_MIN).clamp(1, THREADS);
    if threads == 1 {
        return drop(links);
    }
    let per_thread = links.len().div_ceil(threads);
    thread::scope(|scope| {
        while !links.is_empty() {
            let chunk: Vec<Link> = links.drain(..per_thread.min(links.len())).collect();
            scope.spawn(move || drop(chunk));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_link_is_dropped() {
        for n in [0, 1, 15, 16, 100, 2000] {
            let dropped = Arc::new(AtomicUsize::new(0));
            let links: Vec<Link> = (0..n)
                .map(|_| Box::new(Counted(Arc::clone(&dropped))) as Link)
                .collect();
            detach_all(links);
            assert_eq!(dropped.load(Ordering::Relaxed), n);
        }
    }
}
