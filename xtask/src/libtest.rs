//! What Rust test binaries reported: libtest's `test result:` counts, the
//! names of failed tests, and the tests that do not apply to this kernel.
//! Those print `N/A: NAME: REASON` on stderr and return, so libtest counts
//! them as passed (tests/src/capabilities.rs); here they count as skipped,
//! as do the tests libtest counts as ignored (a harness that finds the
//! kernel cannot run a test marks it so: ipft-filter's `kernel` test).
//! Read for the host run (`cargo xtask test`) and for the same binaries run
//! inside the VM guests.

/// The counts of one or more test binaries' runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// As libtest counts them, not-applicable tests included.
    ok: u64,
    pub failed: u64,
    /// As libtest counts them: tests marked ignored.
    ignored: u64,
    /// `test NAME ... FAILED` names.
    pub failures: Vec<String>,
    /// (test, reason) of every `N/A:` line.
    pub not_applicable: Vec<(String, String)>,
    /// (test, reason) of tests the runner left out (libtest's `--skip`).
    pub not_run: Vec<(String, String)>,
}

impl Tally {
    /// Reads a line of libtest's stdout (the pretty format).
    pub fn stdout_line(&mut self, line: &str) {
        if let Some(counts) = line.strip_prefix("test result: ") {
            self.ok += count(counts, "passed");
            self.failed += count(counts, "failed");
            self.ignored += count(counts, "ignored");
        }
        let failed = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"));
        if let Some(name) = failed {
            self.failures.push(name.to_string());
        }
    }

    /// Reads a line of the test binaries' stderr.
    pub fn stderr_line(&mut self, line: &str) {
        // A test's line may follow another's unfinished output.
        let Some(at) = line.find("N/A: ") else {
            return;
        };
        if let Some((test, why)) = line[at + 5..].split_once(": ") {
            self.not_applicable
                .push((test.to_string(), why.to_string()));
        }
    }

    /// Tests that ran and passed.
    pub fn passed(&self) -> u64 {
        self.ok.saturating_sub(self.not_applicable.len() as u64)
    }

    /// Tests that did not apply here, were ignored, or were not run.
    pub fn skipped(&self) -> u64 {
        (self.not_applicable.len() + self.not_run.len()) as u64 + self.ignored
    }

    /// `N passed, N failed, N skipped` (as the closing line has it).
    pub fn counts(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed,
            self.skipped()
        )
    }
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
        assert_eq!(count("FAILED. 3 passed; 1 failed; 0 ignored", "passed"), 3);
    }

    #[test]
    fn not_applicable_tests_are_skipped_not_passed() {
        let mut tally = Tally::default();
        tally.stdout_line("test a ... ok");
        tally.stdout_line("test b ... FAILED");
        tally.stdout_line("test result: FAILED. 4 passed; 1 failed; 0 ignored");
        tally.stderr_line("N/A: c: needs the ftrace backend: fentry is refused (EPERM)");
        tally.stderr_line(".N/A: d: needs kprobes");
        assert_eq!(tally.counts(), "2 passed, 1 failed, 2 skipped");
        assert_eq!(tally.failures, ["b"]);
        let reason = &tally.not_applicable[0].1;
        assert_eq!(
            reason,
            "needs the ftrace backend: fentry is refused (EPERM)"
        );
    }

    #[test]
    fn tests_left_out_are_skipped_and_were_never_passed() {
        let mut tally = Tally::default();
        tally.stdout_line("test result: ok. 3 passed; 0 failed; 0 ignored; 1 filtered out");
        tally.not_run.push(("slow".into(), "too slow here".into()));
        assert_eq!(tally.counts(), "3 passed, 0 failed, 1 skipped");
    }

    #[test]
    fn ignored_tests_are_skipped() {
        let mut tally = Tally::default();
        tally.stdout_line("test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured");
        assert_eq!(tally.counts(), "1 passed, 0 failed, 1 skipped");
    }
}
