//! The VM suite's verdicts: one trial per kernel × backend × scenario case
//! (tests/src/vm/), judged from what `cargo xtask vm-test` collected from
//! the guests. `IPFT_VM_RESULTS` names the kernels' directories
//! (`target/vm/6.1:target/vm/6.12`); without it every trial is ignored,
//! saying how to run the suite. A case whose kernel lacks the feature is
//! ignored with its reason, never passed. After the trials comes the table
//! kernel × backend × scenario with each verdict's reason.
use std::{
    ffi::OsString,
    path::Path,
    sync::{Arc, Mutex},
};

use ipft_tests::vm::{self, Case, CaseOutput, KernelRun, Status, Verdict};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Why nothing is judged without collected results.
const HOW: &str =
    "no VM results: `cargo xtask vm-test` boots the kernels and runs this with IPFT_VM_RESULTS";

/// A line of the closing table.
struct Row {
    /// The trial's place in the listing: the table keeps the guest's order.
    order: usize,
    kernel: String,
    backend: String,
    scenario: String,
    verdict: Verdict,
}

type Table = Arc<Mutex<Vec<Row>>>;

fn main() {
    let args = Arguments::from_args();
    let table = Table::default();
    let trials = match std::env::var_os("IPFT_VM_RESULTS") {
        Some(dirs) => collected(&dirs, &table),
        None => uncollected(),
    };
    let conclusion = libtest_mimic::run(&args, trials);
    print_table(&mut table.lock().unwrap());
    conclusion.exit();
}

/// Every case of every kernel, ignored: nothing was collected.
fn uncollected() -> Vec<Trial> {
    let all: Vec<String> = vm::CONTRACT_BACKENDS
        .iter()
        .chain(&["kprobe-multi"])
        .map(|b| b.to_string())
        .collect();
    let mut trials = Vec::new();
    for kernel in vm::KERNELS {
        let ids = vm::plan(&all).iter().map(Case::id).collect::<Vec<_>>();
        let na = vm::not_applicable(&all).into_iter().map(|(id, ..)| id);
        for id in ids.into_iter().chain(na).filter(|id| vm::wanted(id)) {
            trials.push(Trial::ignorable_test(format!("{kernel}/{id}"), || {
                Ok(Completion::ignored_with(HOW))
            }));
        }
    }
    trials
}

/// The trials of the kernels collected in `dirs`.
fn collected(dirs: &OsString, table: &Table) -> Vec<Trial> {
    let mut trials = Vec::new();
    for dir in std::env::split_paths(dirs) {
        match KernelRun::read(&dir) {
            Ok((run, transcript)) => kernel_trials(&run, transcript.cases, table, &mut trials),
            Err(why) => trials.push(unreadable(&dir, why)),
        }
    }
    trials
}

fn unreadable(dir: &Path, why: String) -> Trial {
    let name = dir.file_name().unwrap_or(dir.as_os_str());
    Trial::test(format!("{}/results", name.to_string_lossy()), move || {
        Err(why.into())
    })
}

fn kernel_trials(
    run: &KernelRun,
    mut outputs: std::collections::BTreeMap<String, CaseOutput>,
    table: &Table,
    trials: &mut Vec<Trial>,
) {
    let run = Arc::new(run.clone());
    for case in vm::plan(&run.implemented) {
        let id = case.id();
        if !vm::wanted(&id) {
            continue;
        }
        let name = format!("{}/{id}", run.series);
        if !run.cases.contains(&id) {
            trials.push(Trial::ignorable_test(name, || {
                Ok(Completion::ignored_with(
                    "not given to the guest in the last vm-test (IPFT_VM_CASES)",
                ))
            }));
            continue;
        }
        let (run, table, order) = (run.clone(), table.clone(), trials.len());
        let out = outputs.remove(&id);
        trials.push(Trial::ignorable_test(name, move || {
            let verdict = match &out {
                Some(out) => vm::judge(&case, out, &run.features, &run.implemented),
                None => Verdict::fail(
                    run.problem
                        .clone()
                        .unwrap_or_else(|| "the guest never ran this case".into()),
                ),
            };
            let row = Row {
                order,
                kernel: run.label.clone(),
                backend: case.backend.to_string(),
                scenario: format!("{} ({})", case.scenario.name(), case.format()),
                verdict: verdict.clone(),
            };
            table.lock().unwrap().push(row);
            outcome(verdict, || case.explain(out.as_ref()))
        }));
    }
    for (id, backend, scenario, why) in vm::not_applicable(&run.implemented) {
        let (run, table, order) = (run.clone(), table.clone(), trials.len());
        trials.push(Trial::ignorable_test(
            format!("{}/{id}", run.series),
            move || {
                let verdict = Verdict::na(why);
                table.lock().unwrap().push(Row {
                    order,
                    kernel: run.label.clone(),
                    backend: backend.into(),
                    scenario: scenario.into(),
                    verdict: verdict.clone(),
                });
                outcome(verdict, String::new)
            },
        ));
    }
}

/// A trial's outcome: a failure shows its reason, then the guest output
/// that explains it.
fn outcome(verdict: Verdict, explain: impl FnOnce() -> String) -> Result<Completion, Failed> {
    match verdict.status {
        Status::Pass => Ok(Completion::Completed),
        Status::NotApplicable => Ok(Completion::ignored_with(verdict.reason)),
        Status::Fail => Err(format!("{}\n{}", verdict.reason, explain()).into()),
    }
}

/// kernel × backend × scenario → PASS / FAIL / N/A and the reason.
fn print_table(rows: &mut [Row]) {
    if rows.is_empty() {
        return;
    }
    rows.sort_by_key(|r| r.order);
    println!(
        "{:<34} {:<13} {:<28} {:<6} Reason",
        "Kernel", "Backend", "Scenario", "Result"
    );
    for r in rows.iter() {
        let status = match r.verdict.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        };
        println!(
            "{:<34} {:<13} {:<28} {status:<6} {}",
            r.kernel,
            r.backend,
            r.scenario,
            vm::shorten(&r.verdict.reason, 200)
        );
    }
    println!();
}
