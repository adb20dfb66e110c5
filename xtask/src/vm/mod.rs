//! `cargo xtask vm-test`: ipft's backends on real Debian kernels, with real
//! packets, inside QEMU.
//!
//! Per kernel: fetch the newest Debian cloud build (cached in target/vm/),
//! build an initramfs with busybox, the just-built ipft and the host's
//! ping/ip/nft, boot it once, run every case in sequence (tests/vm/), then
//! the host's end-to-end test binaries (`host_tests`), and judge the output
//! on the host. One boot per kernel keeps the suite inside
//! its time budget: booting and starting ipft are slow under emulation.
mod capture;
mod cases;
pub(crate) mod guest;
mod host_tests;
pub(crate) mod image;
pub(crate) mod kernel;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use cases::{Case, Features, Scenario, Status, Verdict};

use crate::{build, deps};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Which kernel to boot: 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Leave out the host end-to-end test binaries the guests run after the
    /// scenarios (they add about ten minutes).
    #[arg(long)]
    pub no_host_tests: bool,
}

/// Host tools the suite needs: QEMU, the guest's shell and network tools,
/// xz for modules, dpkg-deb/apt for the kernels, and what the host tests
/// run in the guest (iptables, bpftool, jq, script, unshare, dash; strip
/// for their binaries).
pub(crate) const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("xz", "xz-utils"),
    ("ping", "iputils-ping"),
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ldd", "libc-bin"),
    ("iptables", "iptables"),
    ("bpftool", "bpftool"),
    ("jq", "jq"),
    ("script", "bsdutils"),
    ("unshare", "util-linux"),
    ("dash", "dash"),
    ("strip", "binutils"),
    // Reads ipft's -w pcapng inside the guest (the pcapng scenarios).
    ("tshark", "tshark"),
    // Sends and reads the UDP scenarios' datagrams (busybox has no UDP nc).
    ("socat", "socat"),
];

/// Modules the scenarios load: veth for the namespaces, nf_tables for the
/// marking and drop rules, vxlan for the tunnel; nft_compat and xt_mark
/// for the host tests' `iptables -m mark` (their dependencies are added).
const MODULES: &[&str] = &["veth", "nf_tables", "vxlan", "nft_compat", "xt_mark"];

/// The most one kernel's boot may take before it is stopped: the
/// scenarios and the host test binaries take about 12 minutes with both
/// guests side by side; the margin is for a slower machine, and keeps CI
/// well inside its 90 minutes.
const BOOT_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Backends the ipft contract promises; kprobe-multi is tested once ipft
/// lists it in `--help`.
const CONTRACT_BACKENDS: &[&str] = &["kprobe", "ftrace", "tracepoint"];

pub fn run(opts: &Options) -> Result<()> {
    let started = std::time::Instant::now();
    let series = selected(&opts.kernel)?;
    deps::debian(PACKAGES)?;
    let ipft = ipft_binary()?;
    let implemented = implemented_backends(&ipft);
    let work = build::root().join("target/vm");
    let tests = match opts.no_host_tests {
        false => host_tests::build(&work.join("tests"))?,
        true => Vec::new(),
    };
    let tests: Vec<_> = tests.into_iter().filter(|t| wanted(&t.id())).collect();
    let suite = Suite {
        ipft: &ipft,
        implemented: &implemented,
        tests: &tests,
    };
    kernel::update_package_lists();
    let kernels = series
        .iter()
        .map(|s| kernel::fetch(s, &work.join("kernels")))
        .collect::<Result<Vec<_>>>()?;
    // The guests run side by side: much of a guest's time is spent waiting
    // (RCU grace periods while detaching), so two 2-vCPU guests on two
    // cores finish in about 60% of the time they take one after the other.
    let results = std::thread::scope(|scope| {
        let runs: Vec<_> = kernels
            .iter()
            .map(|k| {
                let (suite, dir) = (&suite, work.join(k.series));
                scope.spawn(move || run_kernel(k, suite, &dir))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a VM thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    report(&results, started.elapsed())
}

/// The just-built release ipft with the test hooks (the host tests' and
/// the bench's), or `IPFT_VM_BIN` (for working on the suite itself while
/// ipft does not build).
pub(crate) fn ipft_binary() -> Result<PathBuf> {
    match std::env::var_os("IPFT_VM_BIN") {
        Some(bin) => {
            eprintln!(
                "xtask: testing {} (IPFT_VM_BIN) instead of a fresh build",
                bin.to_string_lossy()
            );
            Ok(PathBuf::from(bin))
        }
        None => build::build(&build::Options::for_tests(true)),
    }
}

fn selected(which: &str) -> Result<Vec<&'static kernel::Series>> {
    let all = kernel::SERIES;
    match which {
        "all" => Ok(all.iter().collect()),
        name => match all.iter().find(|s| s.name == name) {
            Some(s) => Ok(vec![s]),
            None => bail!("unknown kernel {name:?}: use 6.1, 6.12 or all"),
        },
    }
}

/// Backends ipft implements: the contract's, plus kprobe-multi once its
/// `--help` mentions it.
fn implemented_backends(ipft: &Path) -> Vec<&'static str> {
    let help = Command::new(ipft)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let mut backends = CONTRACT_BACKENDS.to_vec();
    if help.is_ok_and(|h| h.contains("kprobe-multi")) {
        backends.push("kprobe-multi");
    }
    backends
}

/// A table row: backend, scenario, verdict.
type Row = (String, String, Verdict);

/// What the table shows for one kernel.
struct KernelResult {
    label: String,
    rows: Vec<Row>,
    details: Vec<String>,
    elapsed: Duration,
}

/// Rows that need no run: a backend ipft does not implement, or one that
/// cannot do what the scenario asks.
fn static_rows(implemented: &[&str]) -> Vec<Row> {
    let mut rows = vec![(
        "tracepoint".to_string(),
        "forward".to_string(),
        Verdict::na("tracepoints are fixed kernel events: no module functions such as veth_xmit"),
    )];
    if !implemented.contains(&"kprobe-multi") {
        rows.push((
            "kprobe-multi".into(),
            "loopback".into(),
            Verdict::na("not implemented by ipft (not in --help)"),
        ));
    }
    rows
}

/// Every run for one kernel, in the order the guest performs them.
fn plan(implemented: &[&str]) -> Vec<Case> {
    // Function backends; kprobe-multi cases on a kernel without fprobe
    // check that ipft refuses clearly.
    let mut functions = vec!["kprobe", "ftrace"];
    if implemented.contains(&"kprobe-multi") {
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
    for backend in scale_backends(implemented) {
        let mut scale = Case::new(Scenario::Scale, backend, false);
        scale.timeout = 600;
        plan.push(scale);
    }
    // function_graph's start and stop with every function: one entry link
    // per skb position and one return link.
    if scale_backends(implemented).contains(&"kprobe-multi") {
        let mut scale = Case::new(Scenario::ScaleGraph, "kprobe-multi", false);
        scale.timeout = 600;
        plan.push(scale);
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
fn scale_backends(implemented: &[&str]) -> Vec<&'static str> {
    let Ok(list) = std::env::var("IPFT_VM_SCALE") else {
        return ["kprobe", "kprobe-multi"]
            .into_iter()
            .filter(|b| implemented.contains(b))
            .collect();
    };
    ["kprobe", "ftrace", "kprobe-multi", "tracepoint"]
        .into_iter()
        .filter(|b| list.split(',').any(|w| w == *b))
        .collect()
}

/// `IPFT_VM_CASES=loopback,drop` runs only the cases whose id contains one
/// of the words (`tests-cli` for the host's tests/cli.rs): for working on
/// one scenario without the whole suite.
fn wanted(id: &str) -> bool {
    match std::env::var("IPFT_VM_CASES") {
        Ok(filter) => filter.split(',').any(|w| id.contains(w)),
        Err(_) => true,
    }
}

/// What every guest runs: ipft, the scenario cases, the host's tests.
struct Suite<'a> {
    ipft: &'a Path,
    implemented: &'a [&'static str],
    tests: &'a [host_tests::TestBinary],
}

fn run_kernel(kernel: &kernel::Kernel, suite: &Suite, dir: &Path) -> Result<KernelResult> {
    fs::create_dir_all(dir)?;
    let features = Features::from_config(&kernel.config()?);
    let plan: Vec<Case> = plan(suite.implemented)
        .into_iter()
        .filter(|c| wanted(&c.id()))
        .collect();
    let initrd = dir.join("initrd.cpio");
    build_image(kernel, suite, &features, &plan, dir, &initrd)?;
    let label = kernel.series.to_string();
    eprintln!(
        "xtask: booting {} ({} cases, {} test binaries)",
        kernel.release,
        plan.len(),
        suite.tests.len()
    );
    let run = guest::boot(&guest::Boot {
        label: &label,
        vmlinuz: &kernel.vmlinuz(),
        initrd: &initrd,
        console: dir.join("console.log"),
        results: dir.join("results.log"),
        timeout: BOOT_TIMEOUT,
        icount: false,
        single_thread: true,
    })?;
    let mut result = KernelResult {
        label: format!("{} ({})", kernel.series, kernel.release),
        rows: Vec::new(),
        details: Vec::new(),
        elapsed: run.elapsed,
    };
    for case in &plan {
        let verdict = match run.cases.get(&case.id()) {
            Some(out) => cases::judge(case, out, &features, suite.implemented),
            None => Verdict::fail(
                run.problem
                    .clone()
                    .unwrap_or_else(|| "the guest never ran this case".into()),
            ),
        };
        if verdict.status == Status::Fail {
            result.details.push(failure_detail(
                &label,
                case,
                &verdict,
                run.cases.get(&case.id()),
            ));
        }
        let scenario = format!("{} ({})", case.scenario.name(), case.format());
        result
            .rows
            .push((case.backend.to_string(), scenario, verdict));
    }
    for test in suite.tests {
        let (row, detail) = host_tests::row(&label, test, &run, &features);
        result.details.extend(detail);
        result.rows.push(row);
    }
    for row in static_rows(suite.implemented) {
        result.rows.push(row);
    }
    if let Some(problem) = &run.problem {
        let console = run.console_tail(40);
        let console = if console.trim().is_empty() {
            "    (empty: the kernel logged nothing at loglevel 4; no panic or oops)".to_string()
        } else {
            tail(&console, 40)
        };
        result.details.push(format!(
            "--- {label}: {problem}; guest console ({}), last 40 lines:\n{console}",
            run.console.display()
        ));
    }
    let warnings: Vec<&String> = run
        .notes
        .iter()
        .filter(|n| n.starts_with("warn") || n.contains("failed"))
        .collect();
    if !warnings.is_empty() {
        result.details.push(format!(
            "--- {label}: guest warnings:\n{}",
            warnings
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(result)
}

fn build_image(
    kernel: &kernel::Kernel,
    suite: &Suite,
    features: &Features,
    plan: &[Case],
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let mut img = base_image(suite.ipft)?;
    for tool in ["ping", "ip", "nft"] {
        let path = which(tool)?;
        let guest = format!("/usr/{}bin/{tool}", if tool == "ping" { "" } else { "s" });
        img.program(&path, &guest)?;
    }
    // tshark and its ~160 MB of libraries only when a case reads a capture.
    if plan.iter().any(|c| c.args().iter().any(|a| a == "-w")) {
        img.program(&which("tshark")?, "/usr/bin/tshark")?;
    }
    if plan.iter().any(|c| c.scenario.sends_udp()) {
        img.program(&which("socat")?, "/usr/bin/socat")?;
    }
    let modules = kernel::modules(kernel, MODULES, &dir.join("modules"))?;
    let mut order = String::new();
    for m in &modules {
        let name = m
            .file_stem()
            .and_then(|s| s.to_str())
            .context("module name")?;
        img.copy(m, &format!("/vm/modules/{name}.ko"), 0o644)?;
        order += &format!("{name}\n");
    }
    img.file("/vm/modules/order", 0o644, order.into_bytes());
    host_tests::add_to_image(&mut img, suite.tests)?;
    // The host tests last: their iptables rules leave empty netfilter
    // chains behind, which would add rows to the scenarios' packets.
    let cases = plan.iter().map(Case::shell);
    let settings = suite
        .tests
        .first()
        .map(|_| host_tests::SETTINGS.to_string());
    let tests = suite.tests.iter().map(|t| t.shell(features));
    let lines = cases.chain(settings).chain(tests);
    let lines: String = lines.map(|l| l + "\n").collect();
    img.file("/vm/cases", 0o644, lines.into_bytes());
    img.write(out)
}

/// What every guest image holds: the directories, `init`, the case
/// scripts, busybox and ipft. The suite and the benchmark add the rest.
pub(crate) fn base_image(ipft: &Path) -> Result<image::Image> {
    let scripts = build::root().join("tests/vm");
    let mut img = image::Image::default();
    for d in [
        "proc", "sys", "dev", "tmp", "run", "bin", "sbin", "usr/bin", "usr/sbin",
    ] {
        img.dir(d);
    }
    img.copy(&scripts.join("init"), "/init", 0o755)?;
    img.copy(&scripts.join("cases.sh"), "/vm/cases.sh", 0o644)?;
    img.copy(&scripts.join("scenarios.sh"), "/vm/scenarios.sh", 0o644)?;
    // busybox-static normally; a dynamic busybox brings its libraries.
    img.program(&which("busybox")?, "/bin/busybox")?;
    // ipft alone, with no library beside it: the guest then checks the
    // binary as it ships.
    if let Some(loader) = build::elf_interpreter(ipft)? {
        bail!(
            "{} is dynamically linked (loader {loader}); the guest takes only a static ipft, as `cargo xtask build` makes",
            ipft.display()
        );
    }
    img.copy(ipft, "/usr/bin/ipft", 0o755)
        .context("adding ipft to the guest image")?;
    Ok(img)
}

pub(crate) fn which(tool: &str) -> Result<PathBuf> {
    let out = deps::output(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
        .with_context(|| format!("{tool} is not installed on the host"))?;
    Ok(PathBuf::from(out.trim()))
}

/// The guest output that explains a failed case.
fn failure_detail(
    label: &str,
    case: &Case,
    verdict: &Verdict,
    out: Option<&guest::CaseOutput>,
) -> String {
    let mut text = format!(
        "--- {label} {}: {}\n    ipft {}\n",
        case.id(),
        verdict.reason,
        case.args().join(" ")
    );
    // A case the guest never reached or cut short is explained once, by the
    // console tail after the kernel's failures.
    if let Some(out) = out {
        for (name, stream) in [
            ("stderr", &out.stderr),
            ("stdout", &out.stdout),
            ("setup/traffic log", &out.log),
        ] {
            if !stream.trim().is_empty() {
                text += &format!("  [{name}, last 40 lines]\n{}\n", tail(stream, 40));
            }
        }
    }
    text
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn report(results: &[KernelResult], took: Duration) -> Result<()> {
    for r in results {
        for d in &r.details {
            eprintln!("{d}");
        }
    }
    println!();
    println!(
        "{:<34} {:<13} {:<28} {:<6} Reason",
        "Kernel", "Backend", "Scenario", "Result"
    );
    let mut failed = 0;
    for r in results {
        for (backend, scenario, v) in &r.rows {
            let status = match v.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::NotApplicable => "N/A",
            };
            failed += usize::from(v.status == Status::Fail);
            println!(
                "{:<34} {backend:<13} {scenario:<28} {status:<6} {}",
                r.label,
                cases::shorten(&v.reason, 200)
            );
        }
    }
    for r in results {
        println!("{}: guest ran {:.0} s", r.label, r.elapsed.as_secs_f64());
    }
    println!("vm-test took {:.0} s in all", took.as_secs_f64());
    if failed > 0 {
        bail!("{failed} VM test(s) failed: see the table above and the guest output before it");
    }
    Ok(())
}
