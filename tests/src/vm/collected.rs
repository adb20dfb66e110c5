//! What `cargo xtask vm-test` keeps of one kernel's boot, in
//! `target/vm/<kernel>/`: `run.json` (the kernel, its features, the
//! backends ipft implements, the cases the guest was given, why the boot
//! ended early) and `results.jsonl` (the guest's JSON lines). The verdict
//! test target (tests/vm.rs) reads them back.
use std::{fs, path::Path};

use serde_json::{json, Value};

use super::{Features, Transcript};

/// The facts of one boot that the verdicts need.
#[derive(Clone, Debug, Default)]
pub struct KernelRun {
    /// The series: `6.12`.
    pub series: String,
    /// The series and the release booted: `6.12 (6.12.43+deb12-cloud-amd64)`.
    pub label: String,
    pub features: Features,
    /// Backends ipft implements (its `--help`).
    pub implemented: Vec<String>,
    /// Ids of the cases the guest was given.
    pub cases: Vec<String>,
    /// Why the boot ended before the guest finished, if it did.
    pub problem: Option<String>,
}

pub const RUN_FILE: &str = "run.json";
pub const RESULTS_FILE: &str = "results.jsonl";

impl KernelRun {
    pub fn to_json(&self) -> Value {
        json!({
            "series": self.series,
            "label": self.label,
            "features": self.features.to_json(),
            "implemented": self.implemented,
            "cases": self.cases,
            "problem": self.problem,
        })
    }

    pub fn from_json(v: &Value) -> KernelRun {
        let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
        let list = |key: &str| {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        KernelRun {
            series: text("series"),
            label: text("label"),
            features: Features::from_json(&v["features"]),
            implemented: list("implemented"),
            cases: list("cases"),
            problem: v["problem"].as_str().map(str::to_string),
        }
    }

    /// A kernel's directory as the xtask left it: the run and the guest's
    /// transcript.
    pub fn read(dir: &Path) -> Result<(KernelRun, Transcript), String> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read {}: {e}; run `cargo xtask vm-test` to collect it",
                    path.display()
                )
            })
        };
        let run: Value = serde_json::from_str(&read(RUN_FILE)?)
            .map_err(|e| format!("{} is not JSON: {e}", dir.join(RUN_FILE).display()))?;
        let results = read(RESULTS_FILE)?;
        Ok((KernelRun::from_json(&run), Transcript::read(&results)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_as_written() {
        let run = KernelRun {
            series: "6.1".into(),
            label: "6.1 (6.1.0-40-cloud-amd64)".into(),
            features: Features {
                kprobe: true,
                ftrace: true,
                ..Features::default()
            },
            implemented: vec!["kprobe".into(), "kprobe-multi".into()],
            cases: vec!["loopback-kprobe-json".into()],
            problem: Some("the guest stopped".into()),
        };
        let back = KernelRun::from_json(&run.to_json());
        assert_eq!(format!("{back:?}"), format!("{run:?}"));
    }
}
