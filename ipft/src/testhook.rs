//! Hooks for the end-to-end tests, hidden from users: `IPFT_TEST_HOOK`
//! names them, comma-separated. They make rare moments happen on demand,
//! so the tests can check what ipft leaves behind after them.
use std::time::Duration;

fn active(name: &str) -> bool {
    std::env::var("IPFT_TEST_HOOK").is_ok_and(|v| v.split(',').any(|h| h == name))
}

/// `panic-after-ready`: a bug while tracing must still release every
/// program and link (the kernel does, when the process's fds close).
pub fn panic_after_ready() {
    if active("panic-after-ready") {
        panic!("IPFT_TEST_HOOK=panic-after-ready: a panic on purpose");
    }
}

/// `slow-attach`: a pause after each target, so that a signal surely
/// arrives while attaching.
pub fn attach_pause() -> Option<Duration> {
    active("slow-attach").then_some(Duration::from_millis(200))
}
