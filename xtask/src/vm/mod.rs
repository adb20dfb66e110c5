//! `cargo xtask vm-test`: ipft's backends on real Debian kernels, with real
//! packets, inside QEMU.
//!
//! Per kernel: fetch the newest Debian cloud build (cached in target/vm/),
//! build an initramfs with busybox, the just-built ipft and the host's
//! ping/ip/nft, boot it once, run every case in sequence (tests/vm/), then
//! the host's end-to-end test binaries (`host_tests`), and collect the
//! guest's JSON lines in target/vm/<kernel>/. One boot per kernel keeps the
//! suite inside its time budget: booting and starting ipft are slow under
//! emulation. The scenarios and their verdicts are the tests crate's
//! (tests/src/vm/): this module only drives, then runs the verdict test
//! target (`cargo test -p ipft-tests --test vm`) on what it collected.
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
use cases::{Features, Status, Verdict};
use ipft_tests::vm::{self as scenarios, collected, tail, Case, KernelRun};

use crate::{
    build, deps,
    libtest::{self, Tally},
};

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

/// Boots the kernels, runs the cases and judges them; gives the verdict
/// trials' counts.
pub fn run(opts: &Options) -> Result<Tally> {
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
    let tests: Vec<_> = tests
        .into_iter()
        .filter(|t| scenarios::wanted(&t.id()))
        .collect();
    let suite = Suite {
        ipft: &ipft,
        implemented: &implemented,
        tests: &tests,
    };
    // The verdicts are judged after the boots: a target that does not
    // build should fail now, not ten minutes from now.
    deps::run(Command::new("cargo").current_dir(build::root()).args([
        "test",
        "--quiet",
        "--package",
        "ipft-tests",
        "--test",
        "vm",
        "--no-run",
    ]))
    .context("building the VM verdict tests (tests/tests/vm.rs)")?;
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
    let host_tests = report(&results);
    let verdicts = verdicts(&results);
    for r in &results {
        println!("{}: guest ran {:.0} s", r.label, r.elapsed.as_secs_f64());
    }
    println!(
        "vm-test took {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    let verdicts = verdicts?;
    host_tests.map(|()| verdicts)
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
fn implemented_backends(ipft: &Path) -> Vec<String> {
    let help = Command::new(ipft)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let mut backends = scenarios::CONTRACT_BACKENDS.to_vec();
    if help.is_ok_and(|h| h.contains("kprobe-multi")) {
        backends.push("kprobe-multi");
    }
    backends.into_iter().map(str::to_string).collect()
}

/// A host tests' table row: backend, scenario, verdict.
type Row = (String, String, Verdict);

/// What one kernel's boot left: its directory of collected results, the
/// host test binaries' rows, and the guest output that explains failures.
struct KernelResult {
    label: String,
    dir: PathBuf,
    rows: Vec<Row>,
    details: Vec<String>,
    elapsed: Duration,
}

/// What every guest runs: ipft, the scenario cases, the host's tests.
struct Suite<'a> {
    ipft: &'a Path,
    implemented: &'a [String],
    tests: &'a [host_tests::TestBinary],
}

fn run_kernel(kernel: &kernel::Kernel, suite: &Suite, dir: &Path) -> Result<KernelResult> {
    fs::create_dir_all(dir)?;
    // A run.json left by an earlier boot must not be judged as this one's.
    let _ = fs::remove_file(dir.join(collected::RUN_FILE));
    let features = Features::from_config(&kernel.config()?);
    let plan: Vec<Case> = scenarios::plan(suite.implemented)
        .into_iter()
        .filter(|c| scenarios::wanted(&c.id()))
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
        results: dir.join(collected::RESULTS_FILE),
        timeout: BOOT_TIMEOUT,
        icount: false,
        single_thread: true,
    })?;
    let collected = KernelRun {
        series: kernel.series.to_string(),
        label: format!("{} ({})", kernel.series, kernel.release),
        features: features.clone(),
        implemented: suite.implemented.to_vec(),
        cases: plan.iter().map(Case::id).collect(),
        problem: run.problem.clone(),
    };
    let json = serde_json::to_string_pretty(&collected.to_json())? + "\n";
    fs::write(dir.join(collected::RUN_FILE), json)?;
    let mut result = KernelResult {
        label: collected.label,
        dir: dir.to_path_buf(),
        rows: Vec::new(),
        details: Vec::new(),
        elapsed: run.elapsed,
    };
    for test in suite.tests {
        let (row, detail) = host_tests::row(&label, test, &run, &features);
        result.details.extend(detail);
        result.rows.push(row);
    }
    result.details.extend(guest_trouble(&label, &run));
    Ok(result)
}

/// Why a guest stopped early (with its console's last lines), and the
/// warnings it printed outside any case.
fn guest_trouble(label: &str, run: &guest::Run) -> Vec<String> {
    let mut details = Vec::new();
    if let Some(problem) = &run.problem {
        let console = run.console_tail(40);
        let console = if console.trim().is_empty() {
            "    (empty: the kernel logged nothing at loglevel 4; no panic or oops)".to_string()
        } else {
            tail(&console, 40)
        };
        details.push(format!(
            "--- {label}: {problem}; guest console ({}), last 40 lines:\n{console}",
            run.console.display()
        ));
    }
    let warnings: Vec<&str> = run
        .notes
        .iter()
        .filter(|n| n.starts_with("warn") || n.contains("failed"))
        .map(|s| s.as_str())
        .collect();
    if !warnings.is_empty() {
        details.push(format!(
            "--- {label}: guest warnings:\n{}",
            warnings.join("\n")
        ));
    }
    details
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
    // socat with its libraries only when a case sends UDP.
    for tool in ["tshark", "socat"] {
        if plan.iter().any(|c| c.scenario.spec().tools.contains(&tool)) {
            img.program(&which(tool)?, &format!("/usr/bin/{tool}"))?;
        }
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
    // cases.sh writes its JSON lines with jq (every text escaped).
    img.program(&which("jq")?, "/usr/bin/jq")?;
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

/// The guests' trouble and the host test binaries' rows, before the
/// verdicts.
fn report(results: &[KernelResult]) -> Result<()> {
    for r in results {
        for d in &r.details {
            eprintln!("{d}");
        }
    }
    let rows: Vec<(&str, &Row)> = results
        .iter()
        .flat_map(|r| r.rows.iter().map(|row| (r.label.as_str(), row)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    println!();
    println!(
        "{:<34} {:<13} {:<28} {:<6} Reason",
        "Kernel", "Backend", "Scenario", "Result"
    );
    let mut failed = 0;
    for (label, (backend, scenario, v)) in &rows {
        let status = match v.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        };
        failed += usize::from(v.status == Status::Fail);
        println!(
            "{label:<34} {backend:<13} {scenario:<28} {status:<6} {}",
            scenarios::shorten(&v.reason, 200)
        );
    }
    println!();
    if failed > 0 {
        bail!("{failed} host test binary row(s) failed in the guests: see the table above and the guest output before it");
    }
    Ok(())
}

/// Runs the verdict test target on the kernels' collected results: one
/// trial per case, then the table kernel × backend × scenario.
fn verdicts(results: &[KernelResult]) -> Result<Tally> {
    let dirs = std::env::join_paths(results.iter().map(|r| &r.dir))
        .context("a kernel's results directory has a `:` in its path")?;
    eprintln!("xtask: judging the guests' results (cargo test -p ipft-tests --test vm)");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(build::root())
        .args(["test", "--quiet", "--package", "ipft-tests", "--test", "vm"])
        .env("IPFT_VM_RESULTS", dirs);
    libtest::run(&mut cargo).context("VM test(s) failed: see the failures and the table above")
}
