//! Detaching: dropping every link, in parallel, or in a background process
//! when a user at a terminal would otherwise wait for it.
//!
//! The kernel waits for an RCU grace period (tens to hundreds of
//! milliseconds) when a kprobe or trampoline goes away; one link after the
//! other that is minutes for a few thousand functions. Closing them from
//! several threads lets those waits overlap where the kernel allows it; for
//! kprobes and fentry it does not (each removal holds a global lock across
//! its grace period), so at a terminal ipft hands its probes to a child
//! process that removes them, and the prompt comes back when the output
//! ends. Without a terminal (scripts, CI) ipft waits: when it exits, its
//! probes are gone.
use std::io::IsTerminal;

use super::Link;
use crate::par;

/// Threads used to detach: waits overlap, they do not need CPUs.
const THREADS: usize = 32;
/// Below this many links one thread is as quick as many.
const PER_THREAD_MIN: usize = 16;

/// With at least this many links, detaching takes the kernel seconds to
/// minutes (kprobe, ftrace); below, well under a second.
const BACKGROUND_MIN: usize = 100;

/// Whether to leave `links` to [`to_background`]: many links, and a user at
/// a terminal waiting for the prompt.
pub fn background_wanted(links: usize) -> bool {
    let interactive = std::io::stderr().is_terminal();
    (interactive && links >= BACKGROUND_MIN) || crate::testhook::background_detach()
}

/// Forks a child that removes every probe of this process and exits:
/// in its own session, with no terminal and no pipe of the user's open (a
/// pager reading ipft's output gets its end at once). This process's fds,
/// links included, are then only extra references, which close at no
/// cost. Returns the child's pid, or `None` if fork failed (detach here).
pub fn to_background() -> Option<i32> {
    // SAFETY: the child makes only system calls (no allocation, no locks
    // another thread may have held at the fork) before _exit.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => unsafe {
            libc::setsid();
            // Every fd: the links, programs and maps go with the last
            // reference, which is now ours; stdin/stdout/stderr too.
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..65_536 {
                    libc::close(fd);
                }
            }
            libc::_exit(0)
        },
        pid => Some(pid),
    }
}

/// Drops every link; returns once all are detached.
pub fn detach_all(links: Vec<Link>) {
    let threads = (links.len() / PER_THREAD_MIN).clamp(1, THREADS);
    // Each thread drops one link at a time: the waits overlap.
    par::ordered(links, threads, &drop, &mut |()| true);
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
