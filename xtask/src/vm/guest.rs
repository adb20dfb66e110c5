//! Boots a kernel with the image under QEMU (software emulation: KVM guests
//! do not boot on the CI machines) and collects the JSON lines the guest
//! writes to its second serial port (tests/src/vm/output.rs reads them).
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
pub use ipft_tests::vm::CaseOutput;
use ipft_tests::vm::{Seen, Transcript};

/// Everything one boot produced.
pub struct Run {
    pub cases: BTreeMap<String, CaseOutput>,
    /// Runner messages outside any case (module loading, …).
    pub notes: Vec<String>,
    pub console: PathBuf,
    pub elapsed: Duration,
    /// Why the run ended early, if it did.
    pub problem: Option<String>,
}

impl Run {
    /// The last lines of the guest console, to explain a crash or hang.
    pub fn console_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

pub struct Boot<'a> {
    pub label: &'a str,
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub console: PathBuf,
    /// Where the guest's JSON lines are saved (results.jsonl).
    pub results: PathBuf,
    pub timeout: Duration,
    /// One vCPU whose clock counts instructions (`-icount`): timings that
    /// do not depend on the host's load. (Two vCPUs under icount crashed
    /// the 6.12 guest in an atomic instruction.)
    pub icount: bool,
    /// Both vCPUs run in turn on one host thread (see `qemu`): the suite's
    /// guests. The bench keeps a thread per vCPU, as its earlier figures.
    pub single_thread: bool,
}

pub fn boot(b: &Boot) -> Result<Run> {
    let started = Instant::now();
    let mut child = qemu(b)?;
    let stdout = child.stdout.take().context("qemu has no stdout")?;
    let (tx, rx) = mpsc::channel();
    // Everything the guest reported, kept for the verdicts and for looking
    // into a run afterwards.
    let mut saved = fs::File::create(&b.results)
        .with_context(|| format!("creating {}", b.results.display()))?;
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let _ = writeln!(saved, "{text}");
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut transcript = Transcript::default();
    let deadline = started + b.timeout;
    let mut problem = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => match transcript.line(&line) {
                Seen::Begin(id) => eprintln!(
                    "xtask: [{} {:>4} s] {id}",
                    b.label,
                    started.elapsed().as_secs()
                ),
                Seen::Done => break,
                Seen::Other => {}
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                problem = Some(format!(
                    "the guest did not finish within {} s: stopped it",
                    b.timeout.as_secs()
                ));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                problem = Some("the guest stopped before finishing its cases (crash or panic: see its console)".into());
                break;
            }
        }
    }
    // A finished guest is powering off; a stuck one is killed at once.
    let grace = if problem.is_none() { 10 } else { 0 };
    stop(&mut child, Duration::from_secs(grace));
    Ok(Run {
        cases: transcript.cases,
        notes: transcript.notes,
        console: b.console.clone(),
        elapsed: started.elapsed(),
        problem,
    })
}

fn qemu(b: &Boot) -> Result<Child> {
    let console = format!("file:{}", b.console.display());
    let mut qemu = Command::new("qemu-system-x86_64");
    if b.icount {
        // 1 ns of guest time per instruction; idle time skipped.
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    let cpus = if b.icount { "1" } else { "2" };
    // With a thread per vCPU (MTTCG), a vCPU could still run an `int3` the
    // kernel had just patched out of a tracepoint's call site
    // (text_poke_bp): the 6.12 guest died of an `Oops: int3` in
    // __netif_receive_skb_core while the host tests attached and detached
    // tracepoints. Taking turns on one thread, every vCPU sees code the
    // moment it is written, as on real hardware.
    let accel = if b.single_thread {
        "tcg,thread=single"
    } else {
        "tcg"
    };
    qemu.args(["-accel", accel, "-cpu", "max", "-smp", cpus, "-m", "2048"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initrd)
        // panic=-1 reboots on a panic, and -no-reboot turns that into an exit.
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off",
        ])
        // ttyS0: kernel console, kept for diagnosis; ttyS1: the results.
        .args(["-serial", &console, "-serial", "stdio", "-monitor", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start qemu-system-x86_64 (apt-get install qemu-system-x86)")
}

/// Gives a powering-off guest `grace`, then kills QEMU.
fn stop(child: &mut Child, grace: Duration) {
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
