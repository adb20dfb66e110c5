//! One benchmark run of one backend, where ipft runs (in the guest, or on
//! the host for tracepoint): start ipft on every skb function, time its
//! readiness, send traffic, SIGINT, time the table and the exit.
use std::{
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{anchor, traffic};

#[derive(clap::Args, Clone)]
pub struct Options {
    /// ipft backend to measure.
    #[arg(long)]
    pub backend: String,
    /// The ipft binary.
    #[arg(long, default_value = "ipft")]
    pub ipft: PathBuf,
    /// Marked datagrams in the burst.
    #[arg(long, default_value_t = 10_000)]
    pub packets: u64,
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Longest wait for readiness and for the exit, each.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Also write the packets as pcapng (`ipft -w`), to measure its cost.
    #[arg(long)]
    pub write: bool,
    /// ipftrace2's binary: measure it side by side (kprobe-multi only).
    #[arg(long)]
    pub anchor: Option<PathBuf>,
    /// Interleaved rounds of the side by side (the median is kept).
    #[arg(long, default_value_t = 3)]
    pub anchor_rounds: u32,
    /// UDP by one thread that sends and reads back each datagram (for a
    /// one-vCPU, instruction-counted guest).
    #[arg(long)]
    pub lockstep: bool,
}

impl Options {
    /// Unmarked UDP datagrams per second, by the chosen method.
    pub fn udp_rate(&self) -> Result<f64> {
        match self.lockstep {
            true => traffic::lockstep_rate(self.seconds),
            false => traffic::udp_rate(self.seconds),
        }
    }

    fn udp_method(&self) -> &'static str {
        match self.lockstep {
            true => "one thread, send then read back",
            false => "sender and receiver threads",
        }
    }
}

/// 0x55555555, as in the VM suite.
const MARK: u32 = 0x5555_5555;

/// Prints the figures as one `bench-result {json}` line (the host finds it
/// among the guest's output).
pub fn main(opts: &Options) -> Result<()> {
    let figures = measure(opts)?;
    println!("bench-result {figures}");
    Ok(())
}

pub fn measure(opts: &Options) -> Result<Value> {
    // Throughput without ipft first, right before it starts.
    let udp_without = opts.udp_rate()?;
    let tcp_without = traffic::tcp_rate(opts.seconds)?;
    let ready_file = std::env::temp_dir().join(format!("ipft-bench-{}.ready", opts.backend));
    let _ = fs::remove_file(&ready_file);
    let started = Instant::now();
    let mut ipft = spawn(opts, &ready_file)?;
    let stdout = watch_stdout(&mut ipft)?;
    let stderr = collect_stderr(&mut ipft)?;
    let ready = wait_ready(&mut ipft, &ready_file, opts.timeout).map(|()| started.elapsed());
    let label = match opts.write {
        true => format!("{} -w", opts.backend),
        false => opts.backend.clone(),
    };
    let mut figures = json!({ "backend": label, "udp_method": opts.udp_method() });
    if let Ok(ready) = &ready {
        figures["ready_s"] = json!(ready.as_secs_f64());
        let udp_with = opts.udp_rate()?;
        let tcp_with = traffic::tcp_rate(opts.seconds)?;
        // After the unmarked traffic: start-up's transient memory is freed.
        let rss_before = settle_rss(ipft.id());
        let sent = traffic::marked_burst(MARK, opts.packets)?;
        let rss_full = settle_rss(ipft.id());
        figures["udp_pps_without"] = json!(udp_without);
        figures["udp_pps_with"] = json!(udp_with);
        figures["udp_ratio"] = json!(udp_with / udp_without);
        figures["tcp_bps_without"] = json!(tcp_without);
        figures["tcp_bps_with"] = json!(tcp_with);
        figures["tcp_ratio"] = json!(tcp_with / tcp_without);
        figures["packets_sent"] = json!(sent);
        figures["rss_before_burst"] = json!(rss_before);
        figures["rss_after_burst"] = json!(rss_full);
        figures["rss_growth_bytes"] = json!(rss_full.saturating_sub(rss_before));
    }
    let sigint = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(ipft.id() as i32, libc::SIGINT) };
    let exit = wait_exit(&mut ipft, opts.timeout);
    figures["exit_s"] = json!(sigint.elapsed().as_secs_f64());
    figures["exit_status"] = json!(exit);
    let (first_output, last_output, out_bytes) = stdout.join().unwrap_or((None, None, 0));
    figures["ctrlc_to_first_output_s"] =
        json!(first_output.map(|t| t.saturating_duration_since(sigint).as_secs_f64()));
    figures["ctrlc_to_last_output_s"] =
        json!(last_output.map(|t| t.saturating_duration_since(sigint).as_secs_f64()));
    figures["table_bytes"] = json!(out_bytes);
    let err = stderr.join().unwrap_or_default();
    stderr_figures(&err, &mut figures);
    if let Err(e) = &ready {
        figures["error"] = json!(format!("{e:#}; stderr: {}", tail(&err, 10)));
    }
    let _ = fs::remove_file(&ready_file);
    let _ = fs::remove_file(ready_file.with_extension("pcapng"));
    if opts.backend == "kprobe-multi" && ready.is_ok() {
        figures["udp_ratio_empty_program"] =
            json!(empty_program_udp(opts, &ready_file)? / udp_without);
        let (graph_ready, graph_exit) = graph_times(opts, &ready_file)?;
        figures["graph_ready_s"] = json!(graph_ready);
        figures["graph_exit_s"] = json!(graph_exit);
        if let Some(anchor) = &opts.anchor {
            figures["anchor"] = side_by_side(opts, anchor);
        }
    }
    Ok(figures)
}

/// ipftrace2 beside ipft in this boot, or why not.
fn side_by_side(opts: &Options, ipftrace2: &Path) -> Value {
    let a = anchor::Anchor {
        ipftrace2,
        probe: opts,
        rounds: opts.anchor_rounds.max(1),
    };
    anchor::measure(&a).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
}

/// Unmarked UDP throughput with ipft attached to the same functions but
/// running a program that returns at once (`IPFT_TEST_HOOK=empty-program`):
/// what the kernel's hooks cost before ipft's filter runs, the floor for
/// `udp_ratio`.
fn empty_program_udp(opts: &Options, ready_file: &Path) -> Result<f64> {
    let mut ipft = command(opts, ready_file)
        .env("IPFT_TEST_HOOK", "empty-program")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ipft with an empty program")?;
    wait_ready(&mut ipft, ready_file, opts.timeout)?;
    let udp = opts.udp_rate();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(ipft.id() as i32, libc::SIGINT) };
    wait_exit(&mut ipft, opts.timeout);
    let _ = fs::remove_file(ready_file);
    udp
}

/// `-t function_graph` on every function (entry and return links): start
/// to ready, and Ctrl-C to exit, in seconds.
fn graph_times(opts: &Options, ready_file: &Path) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut ipft = command(opts, ready_file)
        .args(["-t", "function_graph"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ipft -t function_graph")?;
    wait_ready(&mut ipft, ready_file, opts.timeout)?;
    let ready = started.elapsed().as_secs_f64();
    let sigint = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(ipft.id() as i32, libc::SIGINT) };
    wait_exit(&mut ipft, opts.timeout);
    let _ = fs::remove_file(ready_file);
    Ok((ready, sigint.elapsed().as_secs_f64()))
}

fn command(opts: &Options, ready_file: &Path) -> Command {
    let mut cmd = Command::new(&opts.ipft);
    cmd.args(["-m", &format!("{MARK:#x}"), "-b", &opts.backend, "-v"])
        .arg("--ready-file")
        .arg(ready_file)
        .stdin(Stdio::null());
    if opts.write {
        cmd.arg("-w").arg(ready_file.with_extension("pcapng"));
    }
    cmd
}

fn spawn(opts: &Options, ready_file: &Path) -> Result<Child> {
    command(opts, ready_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", opts.ipft.display()))
}

/// Reads the table as it comes, discarding it: when the first and the last
/// byte arrived, and how many.
fn watch_stdout(child: &mut Child) -> Result<thread::JoinHandle<Output>> {
    let mut out = child.stdout.take().context("ipft stdout")?;
    Ok(thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let (mut first, mut last, mut total) = (None, None, 0u64);
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
            last = Some(Instant::now());
            first = first.or(last);
        }
        (first, last, total)
    }))
}

/// First byte, last byte, bytes.
type Output = (Option<Instant>, Option<Instant>, u64);

fn collect_stderr(child: &mut Child) -> Result<thread::JoinHandle<String>> {
    let err = child.stderr.take().context("ipft stderr")?;
    Ok(thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            text += &line;
            text.push('\n');
        }
        text
    }))
}

/// Polls for the ready file every 5 ms: the resolution the ready time has.
fn wait_ready(child: &mut Child, file: &Path, timeout: u64) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(timeout);
    while Instant::now() < until {
        if file.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("ipft exited before it was ready ({status})");
        }
        thread::sleep(Duration::from_millis(5));
    }
    bail!("ipft not ready after {timeout} s")
}

/// Exit status, or None when it had to be killed after `timeout`.
pub(super) fn wait_exit(child: &mut Child, timeout: u64) -> Option<i32> {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    // A watchdog rather than polling: the reap time is what is measured.
    thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(timeout)).is_err() {
            // SAFETY: kill(2) on the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let status = child.wait().ok().and_then(|s| s.code());
    let _ = tx.send(());
    status
}

/// VmRSS of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// ipft drains the perf buffers behind the burst: its RSS once it stops
/// growing (unchanged for 1 s, or 60 s at most).
fn settle_rss(pid: u32) -> u64 {
    let until = Instant::now() + Duration::from_secs(60);
    let (mut last, mut stable_since) = (rss_bytes(pid), Instant::now());
    while Instant::now() < until && stable_since.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(200));
        let now = rss_bytes(pid);
        if now != last {
            (last, stable_since) = (now, Instant::now());
        }
    }
    last
}

/// The counts ipft prints: attach line, lost events, `-v` totals.
/// ipftrace2's attach line has the same form, rewritten in place with `\r`.
pub(super) fn stderr_figures(err: &str, figures: &mut Value) {
    for line in err.split(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("Attaching program (total ") {
            let n: Vec<u64> = numbers(rest);
            if n.len() == 4 {
                figures["functions"] = json!(n[0]);
                figures["attached"] = json!(n[1]);
                figures["failed"] = json!(n[2]);
            }
        } else if let Some(rest) = line.strip_prefix("Lost ") {
            figures["events_lost"] = json!(numbers(rest).first());
        } else if line.contains(" events of ") && line.contains(" packets") {
            let n = numbers(line);
            figures["events_received"] = json!(n.first());
            figures["packets_traced"] = json!(n.get(1));
        } else if line.ends_with(" bytes per stored event") {
            figures["bytes_per_event"] = json!(numbers(line).first());
        } else if let Some(rest) = line.strip_prefix("-w: ") {
            // `-w: F frames, B bytes written (X bytes per packet)`: ipft's
            // packets; per packet sent is worked out below.
            let n = numbers(rest);
            figures["frames_written"] = json!(n.first());
            figures["pcapng_bytes"] = json!(n.get(1));
        } else if let Some((secs, step)) = start_up_step(line) {
            // `-v`: where start-up and the exit spent their time.
            if !figures["steps"].is_object() {
                figures["steps"] = json!({});
            }
            figures["steps"][step] = json!(secs);
        }
    }
    if figures["events_lost"].is_null() && !figures["events_received"].is_null() {
        figures["events_lost"] = json!(0);
    }
    if let (Some(bytes), Some(sent)) = (
        figures["pcapng_bytes"].as_u64(),
        figures["packets_sent"].as_u64(),
    ) {
        if sent > 0 {
            figures["pcapng_bytes_per_packet"] = json!(bytes as f64 / sent as f64);
        }
    }
    if let (Some(rss), Some(events)) = (
        figures["rss_growth_bytes"].as_u64(),
        figures["events_received"].as_u64(),
    ) {
        if events > 0 {
            figures["rss_bytes_per_event"] = json!(rss as f64 / events as f64);
        }
    }
}

/// `ipft:   1.234 s  eBPF object loaded` → (1.234, "eBPF object loaded").
fn start_up_step(line: &str) -> Option<(f64, &str)> {
    let rest = line.strip_prefix("ipft:")?.trim_start();
    let (secs, step) = rest.split_once(" s  ")?;
    Some((secs.parse().ok()?, step))
}

fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ipft_counts() {
        let mut f = json!({ "rss_growth_bytes": 4000, "packets_sent": 10 });
        stderr_figures(
            "Attaching program (total 1456, succeeded 1450, failed 6, filtered: 0)\n\
             Trace ready!\nLost 12 events (the perf buffer was full)\n\
             100 events of 10 packets; ignored 0 malformed or unknown events\n\
             40 bytes per stored event\n\
             -w: 20004 frames, 3200724 bytes written (320 bytes per packet)\n\
             ipft:   0.052 s  vmlinux BTF opened\n\
             ipft:   1.250 s  attached\n",
            &mut f,
        );
        assert_eq!(f["steps"]["vmlinux BTF opened"], 0.052);
        assert_eq!(f["steps"]["attached"], 1.25);
        assert_eq!(f["functions"], 1456);
        assert_eq!(f["attached"], 1450);
        assert_eq!(f["events_lost"], 12);
        assert_eq!(f["events_received"], 100);
        assert_eq!(f["bytes_per_event"], 40);
        assert_eq!(f["frames_written"], 20004);
        assert_eq!(f["pcapng_bytes"], 3200724);
        assert_eq!(f["pcapng_bytes_per_packet"], 320072.4);
        assert_eq!(f["rss_bytes_per_event"], 40.0);
    }

    #[test]
    fn reads_ipftrace2s_rewritten_attach_line() {
        let mut f = json!({});
        stderr_figures(
            "Attaching program (total 1584, succeeded 0, failed 0, filtered: 0)\r\
             Attaching program (total 1584, succeeded 1584, failed 0, filtered: 0)\n\
             Trace ready!\n",
            &mut f,
        );
        assert_eq!(f["attached"], 1584);
        assert_eq!(f["failed"], 0);
    }
}
