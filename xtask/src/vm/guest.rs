//! Boots a kernel with the image under QEMU (software emulation: KVM guests
//! do not boot on the CI machines) and collects the framed case results the
//! guest writes to its second serial port.
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

const MARKER: &str = "@@ipft-vm ";

/// What the guest reported for one case.
#[derive(Debug, Default, Clone)]
pub struct CaseOutput {
    pub stdout: String,
    pub stderr: String,
    /// Output of the setup, traffic and teardown steps, and runner notes.
    pub log: String,
    /// `-w` cases: tshark's line per frame of ipft's pcapng.
    pub frames: String,
    /// Milliseconds from start to `Trace ready!`; None if never ready.
    pub ready_ms: Option<u64>,
    /// Milliseconds from SIGINT to exit.
    pub stop_ms: u64,
    /// Milliseconds a test binary ran (`run_tests`).
    pub took_ms: u64,
    pub exit: Option<i32>,
    /// The case's `end` marker arrived (else the guest died or timed out).
    pub complete: bool,
    /// The last step the guest announced (to explain a case cut short).
    pub stage: String,
}

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
    /// Where the raw results stream is saved.
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
    // Everything the guest reported, kept for looking into a run afterwards.
    let mut transcript = fs::File::create(&b.results)
        .with_context(|| format!("creating {}", b.results.display()))?;
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let _ = writeln!(transcript, "{text}");
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut parser = Parser::new(b.label);
    let deadline = started + b.timeout;
    let mut problem = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                parser.line(&line);
                if parser.done {
                    break;
                }
            }
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
    parser.flush();
    Ok(Run {
        cases: parser.cases,
        notes: parser.notes,
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

/// Reads the guest's framed protocol (see tests/vm/cases.sh).
struct Parser<'a> {
    label: &'a str,
    cases: BTreeMap<String, CaseOutput>,
    notes: Vec<String>,
    current: Option<(String, CaseOutput)>,
    stream: String,
    done: bool,
    started: Instant,
}

impl<'a> Parser<'a> {
    fn new(label: &'a str) -> Self {
        Parser {
            label,
            cases: BTreeMap::new(),
            notes: Vec::new(),
            current: None,
            stream: String::new(),
            done: false,
            started: Instant::now(),
        }
    }

    fn line(&mut self, line: &str) {
        // A stream without a final newline runs into the next marker.
        match line.find(MARKER) {
            Some(0) => self.marker(&line[MARKER.len()..]),
            Some(i) => {
                self.text(&line[..i]);
                self.marker(&line[i + MARKER.len()..]);
            }
            None => self.text(line),
        }
    }

    fn text(&mut self, line: &str) {
        match &mut self.current {
            Some((_, case)) => {
                let buf = match self.stream.as_str() {
                    "stdout" => &mut case.stdout,
                    "stderr" => &mut case.stderr,
                    "frames" => &mut case.frames,
                    _ => &mut case.log,
                };
                buf.push_str(line);
                buf.push('\n');
            }
            None => self.notes.push(line.to_string()),
        }
    }

    fn marker(&mut self, m: &str) {
        let words: Vec<&str> = m.split_whitespace().collect();
        match words.as_slice() {
            ["case", name, "begin"] => {
                eprintln!(
                    "xtask: [{} {:>4} s] {name}",
                    self.label,
                    self.started.elapsed().as_secs()
                );
                self.current = Some((name.to_string(), CaseOutput::default()));
                self.stream.clear();
            }
            ["result", fields @ ..] => {
                if let Some((_, case)) = &mut self.current {
                    result_fields(case, fields);
                }
            }
            ["stream", name] => self.stream = name.to_string(),
            ["stage", ..] => {
                if let Some((_, case)) = &mut self.current {
                    case.stage = m["stage".len()..].trim().to_string();
                }
            }
            ["case", _, "end"] => {
                if let Some((name, mut case)) = self.current.take() {
                    case.complete = true;
                    self.cases.insert(name, case);
                }
            }
            ["done", ..] => {
                self.flush();
                self.done = true;
            }
            _ => self.notes.push(m.to_string()),
        }
    }

    /// A case cut short still shows what it printed.
    fn flush(&mut self) {
        if let Some((name, case)) = self.current.take() {
            self.cases.insert(name, case);
        }
    }
}

fn result_fields(case: &mut CaseOutput, fields: &[&str]) {
    for f in fields {
        let Some((k, v)) = f.split_once('=') else {
            continue;
        };
        match k {
            "ready_ms" => {
                case.ready_ms = v.parse::<i64>().ok().filter(|&n| n >= 0).map(|n| n as u64)
            }
            "stop_ms" => case.stop_ms = v.parse().unwrap_or(0),
            "took_ms" => case.took_ms = v.parse().unwrap_or(0),
            "exit" => case.exit = v.parse().ok(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_framed_cases() {
        let mut p = Parser::new("t");
        for l in [
            "@@ipft-vm boot 6.12 1.0",
            "@@ipft-vm case a begin",
            "@@ipft-vm result ready_ms=1500 stop_ms=20 exit=0",
            "@@ipft-vm stream stdout",
            "row",
            "@@ipft-vm stream stderr",
            "Trace ready!@@ipft-vm stream log",
            "@@ipft-vm case a end",
            "@@ipft-vm case b begin",
            "@@ipft-vm stage SIGINT sent, waiting",
            "@@ipft-vm done 9.0",
        ] {
            p.line(l);
        }
        assert!(p.done);
        let a = &p.cases["a"];
        assert_eq!(
            (a.ready_ms, a.stop_ms, a.exit, a.complete),
            (Some(1500), 20, Some(0), true)
        );
        assert_eq!(
            (a.stdout.as_str(), a.stderr.as_str()),
            ("row\n", "Trace ready!\n")
        );
        assert!(!p.cases["b"].complete);
        assert_eq!(p.cases["b"].stage, "SIGINT sent, waiting");
    }
}
