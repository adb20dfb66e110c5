//! The VM suite's scenarios and verdicts (`cargo xtask vm-test`): which ipft
//! runs a guest gets, and how their output is judged. Every verdict comes
//! from parsed rows, never from exit codes alone.
//!
//! - [`scenarios`]: each scenario declared once (set-up, ipft's options,
//!   judge); [`plan`] says which backends and formats run it.
//! - the judges, by family: [`loopback`] (and `auto`, scale), [`graph`],
//!   [`paths`] (forwarding, tunnels, `-f`), [`drops`] (nft drop, UDP),
//!   [`identity`] (skb reuse, clones), [`capture`] (`-w` read by tshark).
//! - [`output`]: the guest's JSON lines; [`collected`]: what the xtask
//!   saved per kernel, read back by the verdict test target (tests/vm.rs).
//! - [`verdict`]: verdicts, kernel features, the checks judges share.
pub mod capture;
pub mod collected;
pub mod drops;
pub mod graph;
pub mod identity;
pub mod loopback;
pub mod output;
pub mod paths;
pub mod scenarios;
#[cfg(test)]
mod testing;
pub mod verdict;

use std::fmt::Write as _;

pub use collected::KernelRun;
pub use output::{CaseOutput, Seen, Transcript};
pub use scenarios::{judge, Capture, Scenario, Spec};
pub use verdict::{shorten, Features, Status, Verdict};

/// The mark the guest's traffic carries (`ping -m 1431655765`).
pub const MARK: &str = "0x55555555";

/// The kernel series the suite boots (see xtask/src/vm/kernel.rs).
pub const KERNELS: &[&str] = &["6.1", "6.12"];

/// Backends the ipft contract promises; kprobe-multi is tested once ipft
/// lists it in `--help`.
pub const CONTRACT_BACKENDS: &[&str] = &["kprobe", "ftrace", "tracepoint"];

/// One ipft run in the guest.
#[derive(Clone, Debug)]
pub struct Case {
    pub scenario: Scenario,
    pub backend: &'static str,
    pub json: bool,
}

impl Case {
    pub fn new(scenario: Scenario, backend: &'static str, json: bool) -> Case {
        Case {
            scenario,
            backend,
            json,
        }
    }

    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.scenario.name(),
            self.backend,
            self.format()
        )
    }

    pub fn format(&self) -> &'static str {
        if self.json {
            "json"
        } else {
            "aggregate"
        }
    }

    pub fn graph(&self) -> bool {
        self.scenario.spec().options.contains(&"function_graph")
    }

    /// ipft's command line.
    pub fn args(&self) -> Vec<String> {
        let spec = self.scenario.spec();
        let mut args = match spec.filter {
            Some(filter) => vec!["-f", filter],
            None => vec!["-m", MARK],
        };
        args.extend(["-b", self.backend, "-o", self.format()]);
        args.extend(spec.options);
        // There are only ~30 skb tracepoints: the tracepoint backend
        // attaches them all.
        if let Some(re) = spec.regex.filter(|_| self.backend != "tracepoint") {
            args.extend(["-r", re]);
        }
        let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
        match spec.capture {
            // cases.sh reads this file once ipft exits.
            Some(Capture::File) => args.extend([
                "-w".into(),
                format!("/tmp/cases/{}/capture.pcapng", self.id()),
                "--capture-at".into(),
                "all".into(),
            ]),
            Some(Capture::Stream) => args.extend(["-w".into(), "-".into()]),
            None => {}
        }
        args
    }

    /// The line of /vm/cases that runs this case (see tests/vm/cases.sh).
    pub fn shell(&self) -> String {
        let spec = self.scenario.spec();
        let [setup, traffic, teardown] = spec.steps;
        let runner = match spec.capture {
            Some(Capture::File) => "capture_case file",
            Some(Capture::Stream) => "capture_case stream",
            None => "run_case",
        };
        // Steps get the backend: forward_setup lists what it can trace.
        let mut line = format!(
            "{runner} {} {} '{setup} {b}' '{traffic} {b}' '{teardown} {b}'",
            self.id(),
            spec.timeout,
            b = self.backend
        );
        for a in self.args() {
            write!(line, " '{}'", a.replace('\'', r"'\''")).unwrap();
        }
        line
    }

    /// The guest output that explains a failed verdict: ipft's command
    /// line and the last 40 lines of each stream.
    pub fn explain(&self, out: Option<&CaseOutput>) -> String {
        let mut text = format!("ipft {}\n", self.args().join(" "));
        // A case the guest never reached is explained by the console's
        // tail, which the xtask prints.
        let Some(out) = out else {
            return text;
        };
        for (name, stream) in [
            ("stderr", &out.stderr),
            ("stdout", &out.stdout),
            ("setup/traffic log", &out.log),
        ] {
            if !stream.trim().is_empty() {
                text += &format!("  [{name}, last 40 lines]\n{}\n", tail(stream, 40));
            }
        }
        text
    }
}

/// The last `n` lines of `text`, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every run for one kernel, in the order the guest performs them, for an
/// ipft that implements `implemented`.
pub fn plan(implemented: &[String]) -> Vec<Case> {
    let has = |b: &str| implemented.iter().any(|i| i == b);
    // Function backends; kprobe-multi cases on a kernel without fprobe
    // check that ipft refuses clearly.
    let mut functions = vec!["kprobe", "ftrace"];
    if has("kprobe-multi") {
        functions.push("kprobe-multi");
    }
    let mut plan = Vec::new();
    for &backend in functions.iter().chain(&["tracepoint"]) {
        plan.push(Case::new(Scenario::Loopback, backend, true));
        plan.push(Case::new(Scenario::Loopback, backend, false));
    }
    for &backend in &functions {
        plan.push(Case::new(Scenario::Graph, backend, false));
        plan.push(Case::new(Scenario::Graph, backend, true));
        plan.push(Case::new(Scenario::GraphErrno, backend, false));
        plan.push(Case::new(Scenario::GraphErrno, backend, true));
    }
    for &backend in &functions {
        plan.push(Case::new(Scenario::Forward, backend, true));
        // The table: its fate line (json gives a fate on a freeing line).
        plan.push(Case::new(Scenario::Forward, backend, false));
        plan.push(Case::new(Scenario::Drop, backend, true));
    }
    for &backend in &functions {
        plan.extend(follow_cases(backend));
    }
    // -f without marks: kprobe everywhere, kprobe-multi where ipft has it
    // (its refusal on a kernel without fprobe is judged too).
    for &backend in functions.iter().filter(|b| **b != "ftrace") {
        for scenario in [
            Scenario::SelectForward,
            Scenario::SelectVxlan,
            Scenario::SelectSrv6,
        ] {
            plan.push(Case::new(scenario, backend, true));
        }
    }
    plan.push(Case::new(Scenario::Auto, "auto", true));
    plan.push(Case::new(Scenario::AutoGraph, "auto", true));
    // -w through the VXLAN tunnel: a file read once ipft exits, and a
    // stream piped into tshark as it runs.
    plan.push(Case::new(Scenario::Capture, "kprobe", true));
    plan.push(Case::new(Scenario::CaptureStream, "kprobe", false));
    let scale = scale_backends(implemented);
    for &backend in &scale {
        plan.push(Case::new(Scenario::Scale, backend, false));
    }
    // function_graph's start and stop with every function: one entry link
    // per skb position and one return link.
    if scale.contains(&"kprobe-multi") {
        plan.push(Case::new(Scenario::ScaleGraph, "kprobe-multi", false));
    }
    plan
}

/// The "follow the packet" runs of one backend: a VXLAN tunnel without and
/// with `--track`, the drop reason and its stack, UDP to a closed port and
/// to a bound socket, skb reuse and a clone.
fn follow_cases(backend: &'static str) -> Vec<Case> {
    vec![
        Case::new(Scenario::Untracked, backend, true),
        Case::new(Scenario::Track, backend, false),
        Case::new(Scenario::Track, backend, true),
        Case::new(Scenario::DropReason, backend, false),
        Case::new(Scenario::DropReason, backend, true),
        Case::new(Scenario::DropStack, backend, false),
        Case::new(Scenario::DropStack, backend, true),
        Case::new(Scenario::UdpClosed, backend, false),
        Case::new(Scenario::UdpClosed, backend, true),
        Case::new(Scenario::UdpBound, backend, false),
        Case::new(Scenario::UdpBound, backend, true),
        Case::new(Scenario::Reuse, backend, true),
        Case::new(Scenario::Clone, backend, false),
        Case::new(Scenario::Clone, backend, true),
    ]
}

/// Backends of the scale run: kprobe, and kprobe-multi where ipft has it
/// (one link for every function: quick). Not ftrace by default: ~1,600
/// fentry links take ~95 s to attach and ~4.5 min to detach under emulation.
/// `IPFT_VM_SCALE=kprobe,ftrace` picks others.
fn scale_backends(implemented: &[String]) -> Vec<&'static str> {
    let Ok(list) = std::env::var("IPFT_VM_SCALE") else {
        return ["kprobe", "kprobe-multi"]
            .into_iter()
            .filter(|b| implemented.iter().any(|i| i == b))
            .collect();
    };
    ["kprobe", "ftrace", "kprobe-multi", "tracepoint"]
        .into_iter()
        .filter(|b| list.split(',').any(|w| w == *b))
        .collect()
}

/// Table rows that need no run, as (id, backend, scenario, reason): a
/// backend ipft does not implement, or one that cannot do what the
/// scenario asks.
pub fn not_applicable(implemented: &[String]) -> Vec<(String, &'static str, &'static str, String)> {
    let mut rows = vec![(
        "forward-tracepoint".to_string(),
        "tracepoint",
        "forward",
        "tracepoints are fixed kernel events: no module functions such as veth_xmit".to_string(),
    )];
    if !implemented.iter().any(|i| i == "kprobe-multi") {
        rows.push((
            "loopback-kprobe-multi".into(),
            "kprobe-multi",
            "loopback",
            "not implemented by ipft (not in --help)".into(),
        ));
    }
    rows
}

/// `IPFT_VM_CASES=loopback,drop` selects the cases whose id contains one
/// of the words (`tests-cli` for the host's tests/cli.rs): for working on
/// one scenario without the whole suite.
pub fn wanted(id: &str) -> bool {
    match std::env::var("IPFT_VM_CASES") {
        Ok(filter) => filter.split(',').any(|w| id.contains(w)),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quotes_arguments() {
        let capture = Case::new(Scenario::CaptureStream, "kprobe", false).shell();
        assert!(capture.starts_with(
            "capture_case stream pcapng-stream-kprobe-aggregate 180 'vxlan_setup kprobe'"
        ));
        assert!(capture.ends_with(" '-w' '-'"), "{capture}");
        let line = Case::new(Scenario::Drop, "kprobe", true).shell();
        assert!(line.starts_with(
            "run_case drop-kprobe-json 180 'drop_setup kprobe' 'ping_lo_dropped kprobe' 'drop_teardown kprobe' '-m' '0x55555555'"
        ));
    }

    #[test]
    fn the_tracepoint_backend_attaches_every_tracepoint() {
        let tracepoint = Case::new(Scenario::Loopback, "tracepoint", true).args();
        assert!(!tracepoint.iter().any(|a| a == "-r"), "{tracepoint:?}");
        let kprobe = Case::new(Scenario::Loopback, "kprobe", true).args();
        assert!(kprobe.iter().any(|a| a == "-r"), "{kprobe:?}");
    }

    #[test]
    fn case_ids_are_unique() {
        let all: Vec<String> = CONTRACT_BACKENDS
            .iter()
            .chain(&["kprobe-multi"])
            .map(|b| b.to_string())
            .collect();
        let ids: Vec<String> = plan(&all).iter().map(Case::id).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.contains(&"scale-graph-kprobe-multi-aggregate".to_string()));
    }
}
