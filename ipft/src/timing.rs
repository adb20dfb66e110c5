//! `-v`: how long after start each start-up and exit step was done, so a
//! slow start-up shows where its time went.
use std::{sync::OnceLock, time::Instant};

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts the clock [`step`] reads: call first thing.
pub fn start_clock() {
    STARTED.get_or_init(Instant::now);
}

/// Under `-v`: one line saying how long after start-up `what` was done, so
/// slow start-ups show where their time went.
pub fn step(verbose: bool, what: &str) {
    if verbose {
        let secs = STARTED.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
        eprintln!("ipft: {secs:7.3} s  {what}");
    }
}
