//! Progress on stderr: ipftrace2's lines, rewritten in place on a terminal,
//! one plain line per state otherwise so logs stay readable. In ipft, not
//! ipft-output: it follows the run (attach progress, the terminal).
use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use crate::{
    attach::{Counts, Watch},
    discover::Target,
};

/// How often in-place lines are redrawn: often enough to look live, rarely
/// enough to cost nothing under a flood.
const REDRAW: Duration = Duration::from_millis(100);

pub struct Progress {
    tty: bool,
    /// json mode prints no `Got N traces` line (as ipftrace2).
    show_traces: bool,
    last_draw: Option<Instant>,
    mid_line: bool,
}

impl Progress {
    pub fn new(show_traces: bool) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            show_traces,
            last_draw: None,
            mid_line: false,
        }
    }

    fn attach_line(c: &Counts) -> String {
        format!(
            "Attaching program (total {}, succeeded {}, failed {}, filtered: {})",
            c.total, c.succeeded, c.failed, c.filtered
        )
    }

    /// While attaching: redraw in place on a terminal.
    pub fn attaching(&mut self, counts: &Counts) {
        if self.tty && self.due() {
            self.draw(&Self::attach_line(counts));
        }
    }

    /// The final attach line.
    pub fn attached(&mut self, counts: &Counts) {
        if self.tty {
            self.draw(&Self::attach_line(counts));
            self.end_line();
        } else {
            eprintln!("{}", Self::attach_line(counts));
        }
    }

    pub fn ready(&mut self) {
        self.end_line();
        eprintln!("{}", paint("Trace ready!", GREEN));
    }

    /// As events arrive (throttled); only on a terminal.
    pub fn traces(&mut self, n: u64) {
        if self.show_traces && self.tty && self.due() {
            self.draw(&format!("Got {n} traces"));
        }
    }

    /// At the end: the final count, always.
    pub fn done(&mut self, n: u64) {
        if self.show_traces {
            if self.tty {
                self.draw(&format!("Got {n} traces"));
                self.end_line();
            } else {
                eprintln!("Got {n} traces");
            }
        }
        self.end_line();
    }

    /// A message of its own line, not disturbing an in-place line.
    pub fn note(&mut self, msg: &str) {
        self.end_line();
        eprintln!("{msg}");
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return false;
        }
        self.last_draw = Some(now);
        true
    }

    fn draw(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.mid_line = true;
    }

    /// Leaves the terminal at the start of a fresh line.
    pub fn end_line(&mut self) {
        if self.mid_line {
            eprintln!();
            self.mid_line = false;
        }
    }
}

/// The attach stage's progress on the terminal: the attach line redrawn,
/// and under `-v` each failure with its reason.
pub struct AttachWatch {
    pub progress: Progress,
    pub verbose: bool,
}

impl Watch for AttachWatch {
    fn counts(&mut self, counts: &Counts) {
        self.progress.attaching(counts);
    }

    fn failed(&mut self, target: &Target, why: &str) {
        if self.verbose {
            let (name, module) = (&target.name, &target.module);
            self.progress
                .note(&format!("cannot attach {name} ({module}): {why}"));
        }
    }
}

pub const RED: &str = "1;31";
pub const GREEN: &str = "32";

/// `text` in an ANSI color when stderr is a terminal and NO_COLOR is unset
/// (<https://no-color.org>); plain otherwise, so logs and pipes stay clean.
pub fn paint(text: &str, color: &str) -> String {
    let wanted = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    match wanted {
        true => format!("\x1b[{color}m{text}\x1b[0m"),
        false => text.to_string(),
    }
}
