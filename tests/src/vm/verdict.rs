//! Verdicts, what a kernel offers, and the checks every judge shares: did
//! ipft run, refuse, say when it was ready; rows by name and in order.
use serde_json::{json, Value};

use crate::parse::{Packet, Row};

use super::CaseOutput;

/// A case's outcome; the verdict target makes a not-applicable one an
/// ignored trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not a failure: the kernel or ipft lacks what the row needs, and says so.
    NotApplicable,
}

/// An outcome and the reason the table shows for it.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Pass,
            reason: reason.into(),
        }
    }
    pub fn fail(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Fail,
            reason: reason.into(),
        }
    }
    pub fn na(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::NotApplicable,
            reason: reason.into(),
        }
    }

    /// This verdict and, when it passes, `next`'s: a pass says both.
    pub fn and(self, next: impl FnOnce() -> Verdict) -> Verdict {
        if self.status != Status::Pass {
            return self;
        }
        let next = next();
        match next.status {
            Status::Pass => Verdict::pass(format!("{}; {}", self.reason, next.reason)),
            _ => next,
        }
    }
}

/// What the kernel offers, from its build configuration.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub kprobe: bool,
    pub kprobe_multi: bool,
    pub ftrace: bool,
    pub tracepoint: bool,
}

impl Features {
    pub fn from_config(config: &str) -> Features {
        let on = |opt: &str| config.lines().any(|l| l == format!("CONFIG_{opt}=y"));
        Features {
            kprobe: on("KPROBES") && on("KPROBE_EVENTS"),
            kprobe_multi: on("FPROBE"),
            ftrace: on("DYNAMIC_FTRACE_WITH_DIRECT_CALLS") && on("DEBUG_INFO_BTF"),
            tracepoint: on("DEBUG_INFO_BTF"),
        }
    }

    pub fn has(&self, backend: &str) -> bool {
        match backend {
            "kprobe" => self.kprobe,
            "kprobe-multi" => self.kprobe_multi,
            "ftrace" => self.ftrace,
            "tracepoint" => self.tracepoint,
            _ => false,
        }
    }

    /// As the xtask saves it beside a kernel's results (run.json).
    pub fn to_json(&self) -> Value {
        json!({
            "kprobe": self.kprobe,
            "kprobe-multi": self.kprobe_multi,
            "ftrace": self.ftrace,
            "tracepoint": self.tracepoint,
        })
    }

    pub fn from_json(v: &Value) -> Features {
        let on = |key: &str| v[key].as_bool().unwrap_or(false);
        Features {
            kprobe: on("kprobe"),
            kprobe_multi: on("kprobe-multi"),
            ftrace: on("ftrace"),
            tracepoint: on("tracepoint"),
        }
    }
}

/// A pass says how long ipft took to be ready.
pub(crate) fn with_ready(verdict: Verdict, out: &CaseOutput) -> Verdict {
    if verdict.status != Status::Pass {
        return verdict;
    }
    let ready = out.ready_ms.unwrap_or(0) as f64 / 1000.0;
    Verdict::pass(format!("{}; ready {ready:.1} s", verdict.reason))
}

/// A run that did not reach `Trace ready!`, or did not exit 0 on SIGINT.
pub(crate) fn ran(out: &CaseOutput) -> Option<Verdict> {
    if !out.complete {
        return Some(Verdict::fail(format!(
            "the guest stopped during this case ({})",
            if out.stage.is_empty() {
                "before ipft started"
            } else {
                &out.stage
            }
        )));
    }
    if out.ready_ms.is_none() {
        return Some(Verdict::fail(format!(
            "never printed `Trace ready!` (exit {}): {}",
            exit_text(out),
            first_error(&out.stderr)
        )));
    }
    if out.exit != Some(0) {
        return Some(Verdict::fail(format!(
            "exit {} after SIGINT, expected 0",
            exit_text(out)
        )));
    }
    None
}

pub(crate) fn exit_text(out: &CaseOutput) -> String {
    out.exit.map_or("?".into(), |c| c.to_string())
}

/// A backend the kernel lacks must be refused clearly, not half-attached.
pub(crate) fn judge_refusal(backend: &str, out: &CaseOutput) -> Verdict {
    if out.ready_ms.is_none() && out.exit.is_some_and(|c| c != 0) && !out.stderr.trim().is_empty() {
        return Verdict::na(format!(
            "kernel lacks {}; ipft refused: {}",
            backend,
            first_error(&out.stderr)
        ));
    }
    Verdict::fail(format!(
        "kernel lacks {} but ipft did not refuse it clearly (exit {})",
        backend,
        exit_text(out)
    ))
}

pub(crate) fn first_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.to_lowercase().contains("error"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(no stderr)");
    shorten(line.trim(), 160)
}

pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let cut: String = s.chars().take(n).collect();
    format!("{cut}…")
}

pub(crate) fn matches(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

pub(crate) fn any_match(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| matches(name, p))
}

/// Entry rows only: the function tracer has no returns, function_graph has.
pub(crate) fn entries(g: &Packet) -> Vec<&Row> {
    g.rows.iter().filter(|r| !r.is_return).collect()
}

pub(crate) fn summary(groups: &[Packet]) -> String {
    let seen: Vec<String> = groups
        .iter()
        .map(|g| {
            entries(g)
                .iter()
                .map(|r| r.function.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    shorten(
        &format!("{} group(s): [{}]", groups.len(), seen.join("] [")),
        300,
    )
}
