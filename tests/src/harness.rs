//! The main of every end-to-end test binary (tests/tests/*.rs, built with
//! `harness = false`): libtest's command line and output, from
//! libtest-mimic, with each test's applicability decided before any test
//! runs. A test is declared once, with its name, what it needs of the
//! kernel ([`crate::needs`]) and its body (`ipft_tests::tests!`). One that
//! does not apply here is ignored, its line saying why
//! (`test NAME ... ignored (REASON)`), and counted as ignored by cargo
//! test, nextest and `cargo xtask test`: never run, never a pass. Where no
//! test can run (no ipft to test, not root, no BPF) every test is ignored
//! with that reason.
use std::{any::Any, thread};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::{
    capabilities::{self, Capabilities},
    needs::Need,
    process,
};

/// One end-to-end test.
pub struct Test {
    pub name: &'static str,
    /// What it needs of this kernel, asked before any test runs.
    pub needs: Need,
    /// Its body: it fails by panicking, as a `#[test]` does.
    pub body: fn(),
}

/// Runs the tests the command line selects, as libtest would, and exits
/// with its status.
pub fn main(tests: Vec<Test>) -> ! {
    let mut args = Arguments::from_args();
    // `--ignored` and `--include-ignored` ask to run ignored tests, which
    // here are those that cannot run: each fails with its reason.
    let forced = args.ignored || args.include_ignored;
    // libtest-mimic prints no reason for a test merely flagged ignored; a
    // not-applicable test's runner, which never runs its body, reports it
    // ignored with the reason instead.
    args.include_ignored = true;
    let here = where_tests_run();
    let mut trials: Vec<Trial> = tests.into_iter().map(|t| trial(t, &here, forced)).collect();
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    libtest_mimic::run(&args, trials).exit()
}

/// Set by `cargo xtask test` (and the VM guests): the tests are meant to
/// run here, so a reason that would ignore them all (no ipft, not root, no
/// BPF) fails each one instead: a broken set-up must not pass as skipped.
pub const MUST_RUN: &str = "IPFT_TESTS_MUST_RUN";

/// This kernel's capabilities, or why no end-to-end test can run here.
fn where_tests_run() -> Result<&'static Capabilities, String> {
    process::find_ipft()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "not root: ipft and these tests need root (BPF, perf events, \
                    network namespaces, iptables)"
                .into(),
        );
    }
    capabilities::ask()
}

/// The test as libtest-mimic runs it: its body, or, where it does not
/// apply, ignored (flagged so, for `--list --ignored` and nextest).
fn trial(test: Test, here: &Result<&'static Capabilities, String>, forced: bool) -> Trial {
    let applies = match here {
        Ok(kernel) => (test.needs)(kernel),
        Err(why) if std::env::var_os(MUST_RUN).is_some() => {
            let why = format!("{why} (and {MUST_RUN} is set: the tests must run here)");
            return Trial::test(test.name, move || Err(Failed::from(why)));
        }
        Err(why) => Err(why.clone()),
    };
    let Err(why) = applies else {
        return Trial::test(test.name, move || run(test.name, test.body));
    };
    let not_run = move || match forced {
        true => Err(Failed::from(format!("cannot run here: {why}"))),
        false => Ok(Completion::ignored_with(why)),
    };
    Trial::ignorable_test(test.name, not_run).with_ignored_flag(true)
}

/// Runs a body on a thread named after its test, as libtest does, so that
/// a panic's message names the test that failed.
fn run(name: &str, body: fn()) -> Result<(), Failed> {
    let ran = thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|e| Failed::from(format!("could not start the test's thread: {e}")))?
        .join();
    ran.map_err(|panic| Failed::from(panic_message(&*panic)))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let said = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied());
    format!("test panicked: {}", said.unwrap_or("(no message)"))
}

/// The main of a test binary: `tests! { a_test, another: needs::x }` runs
/// the functions `a_test` and `another`, the latter only where
/// `needs::x` (any [`Need`], usually one of [`crate::needs`]) says this
/// kernel allows it.
#[macro_export]
macro_rules! tests {
    (@needs) => {
        $crate::needs::nothing
    };
    (@needs $needs:path) => {
        $needs
    };
    ($($name:ident $(: $needs:path)?),* $(,)?) => {
        fn main() {
            $crate::harness::main(vec![$($crate::harness::Test {
                name: stringify!($name),
                needs: $crate::tests!(@needs $($needs)?),
                body: $name,
            }),*])
        }
    };
}
