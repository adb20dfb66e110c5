//! What Rust test binaries reported: libtest's `test result:` counts, the
//! names of failed tests, and the tests ignored, each with its reason. The
//! end-to-end tests (tests/src/harness.rs) are ignored where they do not
//! apply to this kernel, their lines saying why: they count as skipped,
//! never as passed. Read for the host run (`cargo xtask test`) and for the
//! same binaries run inside the VM guests.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// The counts of one or more test binaries' runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    /// As the `test result:` lines count them.
    ignored: u64,
    /// `test NAME ... FAILED` names.
    pub failures: Vec<String>,
    /// (test, reason) of every `test NAME ... ignored` line.
    pub ignored_why: Vec<(String, String)>,
    /// (test, reason) of tests the runner left out (libtest's `--skip`).
    pub not_run: Vec<(String, String)>,
}

/// Runs `cargo test`, passing its output through, and tallies what the
/// test binaries reported on stdout (see `libtest`).
pub fn run(cmd: &mut Command) -> Result<Tally> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    let mut tally = Tally::default();
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        tally.stdout_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("tests failed ({})", tally.counts());
    }
    Ok(tally)
}

/// What a test ignored without a reason gets.
const NO_REASON: &str = "ignored (no reason given)";

impl Tally {
    /// Reads a line of libtest's stdout (the pretty format).
    pub fn stdout_line(&mut self, line: &str) {
        if let Some(counts) = line.strip_prefix("test result: ") {
            self.passed += count(counts, "passed");
            self.failed += count(counts, "failed");
            self.ignored += count(counts, "ignored");
        }
        let Some((name, outcome)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        else {
            return;
        };
        // libtest-mimic pads names to line the outcomes up.
        let name = name.trim_end().to_string();
        if outcome == "FAILED" {
            self.failures.push(name);
        } else if let Some(why) = ignored(outcome) {
            self.ignored_why.push((name, why.to_string()));
        }
    }

    /// Tests that did not apply here, or were not run.
    pub fn skipped(&self) -> u64 {
        self.ignored + self.not_run.len() as u64
    }

    /// (test, reason) of every test skipped.
    pub fn skips(&self) -> impl Iterator<Item = &(String, String)> {
        self.ignored_why.iter().chain(&self.not_run)
    }

    /// Adds another run's counts (the VM verdicts to the host tests').
    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.failures.extend(other.failures);
        self.ignored_why.extend(other.ignored_why);
        self.not_run.extend(other.not_run);
    }

    /// `N passed, N failed, N skipped` (as the closing line has it).
    pub fn counts(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed,
            self.failed,
            self.skipped()
        )
    }
}

/// The reason in an `ignored` outcome: libtest-mimic's `ignored (REASON)`,
/// libtest's `ignored, REASON`; `None` for any other outcome.
fn ignored(outcome: &str) -> Option<&str> {
    let rest = outcome.strip_prefix("ignored")?;
    let why = match rest.strip_prefix(" (") {
        Some(why) => why.strip_suffix(')').unwrap_or(why),
        None => rest.strip_prefix(", ").unwrap_or(rest),
    };
    Some(if why.is_empty() { NO_REASON } else { why })
}

/// The number before `word` in `ok. 9 passed; 0 failed; …`.
fn count(counts: &str, word: &str) -> u64 {
    counts
        .split(';')
        .filter_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word)
        })
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_cargo_test_result_lines() {
        let line =
            "ok. 9 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.75s";
        assert_eq!(count(line, "passed"), 9);
        assert_eq!(count(line, "failed"), 2);
        assert_eq!(count(line, "ignored"), 1);
        assert_eq!(count("FAILED. 3 passed; 1 failed; 0 ignored", "passed"), 3);
    }

    #[test]
    fn ignored_tests_are_skipped_with_their_reasons() {
        let mut tally = Tally::default();
        tally.stdout_line("test a     ... ok");
        tally.stdout_line("test b     ... FAILED");
        tally.stdout_line("test graph ... ignored (needs a function backend (kprobe or ftrace))");
        tally.stdout_line("test slow ... ignored, takes an hour");
        tally.stdout_line("test bare ... ignored");
        tally.stdout_line("test result: FAILED. 1 passed; 1 failed; 3 ignored; 0 measured");
        assert_eq!(tally.counts(), "1 passed, 1 failed, 3 skipped");
        assert_eq!(tally.failures, ["b"]);
        let why: Vec<(&str, &str)> = tally
            .skips()
            .map(|(test, why)| (test.as_str(), why.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                ("graph", "needs a function backend (kprobe or ftrace)"),
                ("slow", "takes an hour"),
                ("bare", NO_REASON),
            ]
        );
    }

    #[test]
    fn tests_left_out_are_skipped_and_were_never_passed() {
        let mut tally = Tally::default();
        tally.stdout_line("test result: ok. 3 passed; 0 failed; 0 ignored; 1 filtered out");
        tally.not_run.push(("slow".into(), "too slow here".into()));
        assert_eq!(tally.counts(), "3 passed, 0 failed, 1 skipped");
    }
}
