//! Hooks for the end-to-end tests and the bench: `IPFT_TEST_HOOK` names
//! them, comma-separated. They make rare moments happen on demand, so the
//! tests can check what ipft leaves behind after them. Only builds with the
//! `test-hooks` feature read `IPFT_TEST_HOOK`; without it every hook is off
//! and compiles to nothing, so users' builds cannot be made to panic.
use std::time::Duration;

#[cfg(feature = "test-hooks")]
fn active(name: &str) -> bool {
    static HOOKS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOOKS
        .get_or_init(|| std::env::var("IPFT_TEST_HOOK").unwrap_or_default())
        .split(',')
        .any(|h| h == name)
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
fn active(_name: &str) -> bool {
    false
}

/// `panic-on-event`: a bug while tracing must still release every program
/// and link (the kernel does, when the process's fds close).
pub fn panic_on_event(seen: u64) {
    if seen > 0 && active("panic-on-event") {
        panic!("IPFT_TEST_HOOK=panic-on-event: a panic on purpose");
    }
}

/// `slow-attach`: a pause after each target, so that a signal surely
/// arrives while attaching.
pub fn attach_pause() -> Option<Duration> {
    active("slow-attach").then_some(Duration::from_millis(200))
}

/// `empty-program`: the kprobe-multi backend attaches a program that
/// returns at once, so the benchmark can measure what the kernel's hooks
/// cost before ipft's filter runs.
pub fn empty_program() -> bool {
    active("empty-program")
}

/// `background-detach`: hand the probes to a background process even
/// without a terminal or many links, so the tests can see it work.
pub fn background_detach() -> bool {
    active("background-detach")
}
