//! The host's end-to-end test binaries (tests/tests/*.rs), run inside the
//! guests: proof that they hold on kernels other than the host's, where
//! `auto` picks kprobe-multi or kprobe and fentry works. Each binary runs
//! once per guest after the scenarios; its libtest output comes back like
//! a case's and becomes one table row: passed, failed (by name) and
//! skipped (by name, with the reason): tests the binary ignored because
//! this kernel lacks what they need, and tests the guest left out.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{
    cases::{Features, Status, Verdict},
    guest::{CaseOutput, Run},
    image::Image,
    tail, which, Row,
};
use crate::{build, deps, libtest::Tally};

/// Seconds one binary may run in a guest (all its tests); the tests' own
/// waits are hang protection of a minute or so each.
const TIMEOUT: u32 = 900;

/// Tools the tests run, beyond the guest's ping, ip and nft, at the path
/// the guest's PATH finds first (busybox's applets come last). `sh` is
/// dash: Debian's busybox shell prefers its own applets, whose ping has no
/// `-m`, over PATH.
const TOOLS: &[(&str, &str)] = &[
    ("iptables", "/usr/sbin/iptables"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("jq", "/usr/bin/jq"),
    ("script", "/usr/bin/script"),
    ("unshare", "/usr/bin/unshare"),
    ("dash", "/usr/bin/sh"),
];

/// Where iptables finds its match and target extensions (dlopen'd, so ldd
/// does not name them).
const XTABLES: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// The guest's settings for the test binaries: a flood of 20,000
/// datagrams instead of 100,000 (tests/tests/flood.rs), which took over
/// two minutes of a guest's time.
pub const SETTINGS: &str = "export IPFT_TEST_FLOOD=20000";

/// A test the guests leave out, when, and why: each is counted as skipped
/// there, with its reason.
struct LeftOut {
    binary: &'static str,
    test: &'static str,
    when: fn(&Features) -> bool,
    why: &'static str,
}

const LEFT_OUT: &[LeftOut] = &[
    // The README's example has no `-r`: it attaches every skb function as
    // a kprobe where auto picks kprobe (no fprobe: 6.1), twice.
    LeftOut {
        binary: "script",
        test: "readme_ci_example_runs_as_written",
        when: |f| f.kprobe && !f.kprobe_multi,
        why: "not run in this guest: auto picks kprobe here, and ~1,600 kprobes take about 5 minutes to attach and detach under emulation, twice",
    },
    // Refused before anything is loaded, so the kernel makes no
    // difference; libpcap's optimizer takes over a minute on it under
    // emulation.
    LeftOut {
        binary: "filter",
        test: "filters_ipft_cannot_translate_name_the_construct",
        when: |_| true,
        why: "not run in the guests: it never reaches the kernel, and libpcap compiles its 2,000-term expression for minutes under emulation",
    },
];

/// One test binary, as the guest runs it.
pub struct TestBinary {
    /// The test file's name: `cli` for tests/tests/cli.rs.
    pub name: String,
    /// A copy without debug info (the debug build's is ~28 MB, and the
    /// initramfs lives in the guest's memory).
    pub path: PathBuf,
}

impl TestBinary {
    pub fn id(&self) -> String {
        format!("tests-{}", self.name)
    }

    /// The line of /vm/cases that runs it (see `run_tests` in cases.sh).
    pub fn shell(&self, features: &Features) -> String {
        let mut line = format!("run_tests {} {TIMEOUT} /vm/tests/{}", self.id(), self.name);
        let left_out = self.left_out(features);
        for (test, _) in &left_out {
            line += &format!(" --skip {test}");
        }
        // Once: libtest's command line takes no flag twice.
        if !left_out.is_empty() {
            line += " --exact";
        }
        line
    }

    /// Its tests a guest with `features` does not run, each with why (see
    /// [`LEFT_OUT`]).
    fn left_out(&self, features: &Features) -> Vec<(&'static str, &'static str)> {
        LEFT_OUT
            .iter()
            .filter(|l| l.binary == self.name && (l.when)(features))
            .map(|l| (l.test, l.why))
            .collect()
    }
}

/// Builds the test binaries of tests/tests/ and strips copies of them into
/// `dir`.
pub fn build(dir: &Path) -> Result<Vec<TestBinary>> {
    let json = deps::output(Command::new("cargo").current_dir(build::root()).args([
        "test",
        "--quiet",
        "--package",
        "ipft-tests",
        "--tests",
        "--no-run",
        "--message-format=json",
    ]))
    .context("building the host test binaries")?;
    fs::create_dir_all(dir)?;
    let mut binaries = Vec::new();
    for (name, built) in json.lines().filter_map(test_executable) {
        let path = dir.join(&name);
        deps::run(
            Command::new("strip")
                .arg("--strip-debug")
                .arg(&built)
                .arg("-o")
                .arg(&path),
        )
        .with_context(|| format!("stripping {}", built.display()))?;
        binaries.push(TestBinary { name, path });
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    if binaries.is_empty() {
        bail!("cargo built no test binaries of ipft-tests");
    }
    Ok(binaries)
}

/// (name, executable) of a `compiler-artifact` message for a tests/*.rs
/// binary (not the library's unit tests).
fn test_executable(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    let target = &message["target"];
    let is_test = target["kind"].as_array()?.iter().any(|k| k == "test");
    let executable = message["executable"].as_str()?;
    let name = target["name"].as_str()?;
    is_test.then(|| (name.to_string(), PathBuf::from(executable)))
}

/// Adds the binaries and everything they run to the guest image.
pub fn add_to_image(img: &mut Image, binaries: &[TestBinary]) -> Result<()> {
    for binary in binaries {
        img.program(&binary.path, &format!("/vm/tests/{}", binary.name))?;
    }
    for (tool, guest) in TOOLS {
        img.program(&which(tool)?, guest)?;
    }
    for entry in fs::read_dir(XTABLES).with_context(|| format!("reading {XTABLES}"))? {
        let path = entry?.path();
        let guest = path.to_string_lossy().into_owned();
        img.program(&path, &guest)?;
    }
    Ok(())
}

/// One binary's table row, and for a failure the guest output that
/// explains it (libtest's own report of each failed test comes last).
pub fn row(
    label: &str,
    test: &TestBinary,
    run: &Run,
    features: &Features,
) -> (Row, Option<String>) {
    let out = run.cases.get(&test.id());
    let verdict = match out {
        Some(out) => judge(out, &test.left_out(features)),
        None => Verdict::fail(
            run.problem
                .clone()
                .unwrap_or_else(|| "the guest never ran this binary".into()),
        ),
    };
    let mut detail = None;
    if verdict.status == Status::Fail {
        let why = format!("--- {label} {}: {}\n", test.id(), verdict.reason);
        detail = Some(why + &out.map(streams).unwrap_or_default());
    }
    let scenario = format!("tests/{}.rs", test.name);
    (("host tests".into(), scenario, verdict), detail)
}

/// The last lines of a binary's stdout and stderr.
fn streams(out: &CaseOutput) -> String {
    let mut text = String::new();
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !stream.trim().is_empty() {
            text += &format!("  [{name}, last 80 lines]\n{}\n", tail(stream, 80));
        }
    }
    text
}

/// One binary's verdict: PASS when every test passed or was skipped, with
/// the counts, the names of failures and of tests skipped.
fn judge(out: &CaseOutput, left_out: &[(&str, &str)]) -> Verdict {
    let mut tally = Tally::default();
    let not_run = left_out
        .iter()
        .map(|(test, why)| (test.to_string(), why.to_string()));
    tally.not_run.extend(not_run);
    out.stdout.lines().for_each(|l| tally.stdout_line(l));
    let took = format!("{:.0} s", out.took_ms as f64 / 1000.0);
    let mut reason = format!("{}; {took}", tally.counts());
    if !tally.failures.is_empty() {
        reason += &format!("; failed: {}", tally.failures.join(", "));
    }
    for (test, why) in tally.skips() {
        reason += &format!("; N/A {test}: {why}");
    }
    if !out.complete {
        return Verdict::fail(format!("the guest stopped while it ran ({reason})"));
    }
    let ran = out.stdout.contains("test result: ");
    match (ran, out.exit) {
        (true, Some(0)) if tally.failed == 0 => Verdict::pass(reason),
        (_, exit) => Verdict::fail(format!("exit {exit:?}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str) -> TestBinary {
        TestBinary {
            name: name.into(),
            path: PathBuf::new(),
        }
    }

    #[test]
    fn kprobe_only_guests_leave_the_readme_example_out() {
        let kprobes = Features {
            kprobe: true,
            ..Features::default()
        };
        let fprobe = Features {
            kprobe_multi: true,
            ..kprobes.clone()
        };
        let script = binary("script");
        let skip = " --skip readme_ci_example_runs_as_written --exact";
        assert!(script.shell(&kprobes).ends_with(skip));
        assert_eq!(
            script.shell(&fprobe),
            "run_tests tests-script 900 /vm/tests/script"
        );
        assert_eq!(
            binary("cli").shell(&kprobes),
            "run_tests tests-cli 900 /vm/tests/cli"
        );
    }

    #[test]
    fn only_tests_rs_binaries_are_taken() {
        let test = r#"{"reason":"compiler-artifact","target":{"name":"cli","kind":["test"]},"executable":"/t/cli-1"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"ipft_tests","kind":["lib"]},"executable":"/t/lib-1"}"#;
        let cli = Some(("cli".to_string(), PathBuf::from("/t/cli-1")));
        assert_eq!(test_executable(test), cli);
        assert_eq!(test_executable(lib), None);
    }

    #[test]
    fn a_binary_passes_only_when_nothing_failed() {
        let out = |stdout: &str, exit| CaseOutput {
            stdout: stdout.into(),
            exit: Some(exit),
            complete: true,
            ..CaseOutput::default()
        };
        let ran = "test a     ... ok\ntest graph ... ignored (needs fentry)\n\
                   test result: ok. 1 passed; 0 failed; 1 ignored;\n";
        let verdict = judge(&out(ran, 0), &[("slow", "too slow here")]);
        assert_eq!(verdict.status, Status::Pass);
        let counts = "1 passed, 0 failed, 2 skipped";
        assert!(verdict.reason.starts_with(counts), "{}", verdict.reason);
        assert!(verdict.reason.contains("N/A graph: needs fentry"));
        assert!(verdict.reason.contains("N/A slow: too slow here"));
        let failed = "test a ... FAILED\ntest result: FAILED. 1 passed; 1 failed;\n";
        assert_eq!(judge(&out(failed, 101), &[]).status, Status::Fail);
        assert_eq!(judge(&out("", 0), &[]).status, Status::Fail, "no test ran");
    }
}
