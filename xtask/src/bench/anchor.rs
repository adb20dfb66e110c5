//! Side by side with ipftrace2 (the anchor), in the guest boot that
//! measures ipft: the guest's speed varies by a quarter between boots, so
//! only figures from one boot compare.
//!
//! kprobe-multi only (ipftrace2's kprobe and ftrace take minutes to attach
//! and detach under emulation). Three sets of functions: each tool's full
//! set, and the common set (the names both list, handed to ipft as one
//! anchored `-r` alternation). On each: time to `Trace ready!`, Ctrl-C to
//! exit, functions attached, and the unmarked UDP throughput kept; ipft also
//! with an empty program on the same functions (`IPFT_TEST_HOOK=empty-program`),
//! the floor under any program. The runs are interleaved round by round and
//! the median kept, so that a slow spell of the shared host does not fall on
//! one tool only.
use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::probe;

/// ipftrace2 prints names with `%64.64s`: a name this long may be cut.
const CUT: usize = 64;

/// The backend compared.
const BACKEND: &str = "kprobe-multi";

pub struct Anchor<'a> {
    pub ipftrace2: &'a Path,
    /// ipft, the timeout and the UDP method.
    pub probe: &'a probe::Options,
    pub rounds: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Ipft,
    Ipftrace2,
}

/// What the program selects packets by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Program {
    /// The mark, `-m` (both tools).
    Real,
    /// ipft's empty program: the floor.
    Empty,
    /// ipft's `-f` ([`FILTER`]) instead of a mark: what the filter costs.
    Filter,
}

/// The filter measured against the mark: no datagram of the bench matches
/// it (their ports are ephemeral, above 32767).
pub const FILTER: &str = "udp and dst port 7777";

/// One configuration measured each round.
struct Run {
    tool: Tool,
    /// The common set (an `-r` alternation) rather than the tool's own.
    common: bool,
    program: Program,
}

impl Run {
    fn key(&self) -> String {
        let tool = match self.tool {
            Tool::Ipft => "ipft",
            Tool::Ipftrace2 => "ipftrace2",
        };
        let set = if self.common { "common" } else { "full" };
        let program = match self.program {
            Program::Real => "real",
            Program::Empty => "empty",
            Program::Filter => "filter",
        };
        format!("{tool}_{set}_{program}")
    }
}

/// Everything the side by side found, as the `anchor` object of the
/// kprobe-multi figures.
pub fn measure(a: &Anchor) -> Result<Value> {
    let ipft_list = list(&a.probe.ipft)?;
    let anchor_list = list(a.ipftrace2)?;
    let sets = Sets::new(&ipft_list, &anchor_list);
    let regex = anchored_alternation(&sets.common);
    let runs = plan(&sets);
    let mut per_run: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for _ in 0..a.rounds {
        for run in &runs {
            let figures = once(a, run, &regex)?;
            per_run.entry(run.key()).or_default().push(figures);
        }
    }
    let summary: BTreeMap<String, Value> = per_run
        .iter()
        .map(|(key, rounds)| (key.clone(), summarize(rounds)))
        .collect();
    let not_attached = per_run
        .get("ipft_full_real")
        .and_then(|r| r.first())
        .map(|f| f["not_attached"].clone())
        .unwrap_or(Value::Null);
    Ok(json!({
        "tool": a.ipftrace2.display().to_string(),
        "backend": BACKEND,
        "rounds": a.rounds,
        "sets": sets.to_json(&not_attached),
        "runs": summary,
    }))
}

/// ipft real and empty on both sets, and with `-f` on its own; ipftrace2
/// on its own, and on the common set too only when that differs from its
/// own.
fn plan(sets: &Sets) -> Vec<Run> {
    let mut runs = Vec::new();
    for common in [false, true] {
        let ipft = |program| Run {
            tool: Tool::Ipft,
            common,
            program,
        };
        runs.push(ipft(Program::Real));
        runs.push(ipft(Program::Empty));
        if !common {
            runs.push(ipft(Program::Filter));
        }
        if !common || !sets.only_ipftrace2.is_empty() {
            runs.push(Run {
                tool: Tool::Ipftrace2,
                common,
                program: Program::Real,
            });
        }
    }
    runs
}

fn command(a: &Anchor, run: &Run, regex: &str) -> Command {
    let program = match run.tool {
        Tool::Ipft => &a.probe.ipft,
        Tool::Ipftrace2 => a.ipftrace2,
    };
    let mut cmd = Command::new(program);
    match run.program {
        Program::Filter => cmd.args(["-f", FILTER]),
        _ => cmd.args(["-m", "0x55555555"]),
    };
    cmd.args(["-b", BACKEND]);
    if run.common {
        cmd.args(["-r", regex]);
    }
    if run.tool == Tool::Ipft {
        // The timed start-up steps; ipftrace2's -v would slow it (libbpf's
        // debug output).
        cmd.arg("-v");
    }
    if run.program == Program::Empty {
        cmd.env("IPFT_TEST_HOOK", "empty-program");
    }
    cmd
}

/// One start, unmarked UDP, Ctrl-C, exit; the throughput without either
/// tool is measured just before, so that each ratio has its own baseline.
fn once(a: &Anchor, run: &Run, regex: &str) -> Result<Value> {
    let without = a.probe.udp_rate()?;
    let started = Instant::now();
    let mut child = command(a, run, regex)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", run.key()))?;
    let (ready, stderr) = watch_ready(&mut child)?;
    let mut figures = json!({});
    let ready = ready.recv_timeout(Duration::from_secs(a.probe.timeout));
    if let Ok(at) = ready {
        figures["ready_s"] = json!(at.duration_since(started).as_secs_f64());
        let with = a.probe.udp_rate()?;
        figures["udp_pps_without"] = json!(without);
        figures["udp_pps_with"] = json!(with);
        figures["udp_kept"] = json!(with / without);
    }
    let sigint = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    figures["exit_status"] = json!(probe::wait_exit(&mut child, a.probe.timeout));
    figures["exit_s"] = json!(sigint.elapsed().as_secs_f64());
    let err = stderr.join().unwrap_or_default();
    probe::stderr_figures(&err, &mut figures);
    if run.tool == Tool::Ipftrace2 {
        // Its last attach line says `total 0`: only `succeeded` is right.
        if let Some(f) = figures.as_object_mut() {
            f.remove("functions");
        }
    }
    figures["not_attached"] = json!(not_attached(&err));
    if ready.is_err() {
        figures["error"] = json!(format!("never ready; stderr: {}", probe::tail(&err, 10)));
    }
    Ok(figures)
}

/// Reads the child's stderr: the instant `Trace ready!` arrives (both
/// tools print it), and the whole text once the child is gone. Lines are
/// bytes: ipftrace2 rewrites its progress with `\r`.
fn watch_ready(child: &mut Child) -> Result<(mpsc::Receiver<Instant>, thread::JoinHandle<String>)> {
    let err = child.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel();
    let text = thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            if line.contains("Trace ready!") {
                let _ = tx.send(Instant::now());
            }
            text += &line;
            text.push('\n');
        }
        text
    });
    Ok((rx, text))
}

/// Names ipft's `-v` says it could not attach
/// (`cannot attach NAME (MODULE): why`).
fn not_attached(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("cannot attach ")?.1.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// The median of each timing and ratio over the rounds, and each round's
/// UDP figure (to show the spread).
fn summarize(rounds: &[Value]) -> Value {
    let first = &rounds[0];
    let mut out = json!({
        "functions": first["functions"],
        "attached": first["attached"],
        "failed": first["failed"],
        "udp_kept_rounds": rounds.iter().map(|r| r["udp_kept"].clone()).collect::<Vec<_>>(),
    });
    for key in [
        "ready_s",
        "exit_s",
        "udp_kept",
        "udp_pps_without",
        "udp_pps_with",
    ] {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
        out[key] = json!(median(&mut v));
    }
    if let Some(steps) = rounds.last().map(|r| &r["steps"]).filter(|s| s.is_object()) {
        out["steps"] = steps.clone();
    }
    if let Some(e) = rounds.iter().find_map(|r| r["error"].as_str()) {
        out["error"] = json!(e);
    }
    out
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(match v.len() % 2 {
        1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    })
}

/// One `-l` row.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    name: String,
    module: String,
    pos: u8,
}

/// `tool -l -b kprobe-multi`: both print `name\tmodule\taddress\tposition`
/// rows on stdout (names right-aligned) and the header on stderr.
fn list(tool: &Path) -> Result<Vec<Listed>> {
    let out = Command::new(tool)
        .args(["-l", "-b", BACKEND])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("listing with {}", tool.display()))?;
    if !out.status.success() {
        bail!(
            "{} -l failed: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_list(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t').map(str::trim);
            let (name, module, _addr) = (f.next()?, f.next()?, f.next()?);
            Some(Listed {
                name: name.to_string(),
                module: module.to_string(),
                pos: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// How the two lists compare, by name (what `-r` selects).
struct Sets {
    ipft_rows: usize,
    anchor_rows: usize,
    /// ipft's names that ipftrace2 lists too: the common set.
    common: Vec<String>,
    only_ipft: Vec<Listed>,
    only_ipftrace2: Vec<Listed>,
}

impl Sets {
    fn new(ipft: &[Listed], anchor: &[Listed]) -> Self {
        // ipftrace2 cuts long names, so compare their first 64 bytes.
        let key = |name: &str| name.get(..CUT).unwrap_or(name).to_string();
        let anchor_names: HashSet<String> = anchor.iter().map(|l| key(&l.name)).collect();
        let ipft_names: HashSet<String> = ipft.iter().map(|l| key(&l.name)).collect();
        let mut common: Vec<String> = ipft
            .iter()
            .filter(|l| anchor_names.contains(&key(&l.name)))
            .map(|l| l.name.clone())
            .collect();
        common.sort();
        common.dedup();
        Sets {
            ipft_rows: ipft.len(),
            anchor_rows: anchor.len(),
            common,
            only_ipft: only(ipft, &anchor_names, key),
            only_ipftrace2: only(anchor, &ipft_names, key),
        }
    }

    /// Counts, and the names only one tool lists, with their skb position
    /// (and for ipft's, whether it attached them).
    fn to_json(&self, not_attached: &Value) -> Value {
        let failed: HashSet<&str> = not_attached
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let row = |l: &Listed| {
            let mut v = json!({ "name": l.name, "module": l.module, "pos": l.pos });
            if !failed.is_empty() {
                v["attached"] = json!(!failed.contains(l.name.as_str()));
            }
            v
        };
        json!({
            "ipft_listed": self.ipft_rows,
            "ipftrace2_listed": self.anchor_rows,
            "common_names": self.common.len(),
            "only_ipft": self.only_ipft.iter().map(row).collect::<Vec<_>>(),
            "only_ipftrace2": self.only_ipftrace2.iter().map(row).collect::<Vec<_>>(),
        })
    }
}

fn only(rows: &[Listed], other: &HashSet<String>, key: impl Fn(&str) -> String) -> Vec<Listed> {
    rows.iter()
        .filter(|l| !other.contains(&key(&l.name)))
        .cloned()
        .collect()
}

/// `^(?:a|b|…)$`: exactly these names, for ipft's and ipftrace2's `-r`
/// (Rust regex and PCRE2 read it alike). A name of 64 bytes may have been
/// cut by ipftrace2, so it matches as a prefix.
fn anchored_alternation(names: &[String]) -> String {
    let alternatives: Vec<String> = names
        .iter()
        .map(|n| {
            let mut re = escape(n);
            if n.len() == CUT {
                re += r"\w*";
            }
            re
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// Kernel symbol names are `[A-Za-z0-9_.]`; anything else is escaped.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where the bench looks for ipftrace2 by default: beside the checkout,
/// in the project's shared folder (never inside the repository).
pub fn default_path(root: &Path) -> PathBuf {
    root.join("../shared/anchors/ipftrace2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, pos: u8) -> Listed {
        Listed {
            name: name.into(),
            module: "vmlinux".into(),
            pos,
        }
    }

    #[test]
    fn parses_both_list_formats() {
        let text = format!(
            "{:>64}\t{:>16}\t0x{:016x}\t{}\n{:>64}\t{:>16}\t{:#018x}\t{}\n",
            "ip_rcv", "vmlinux", 0xffffffff81000000u64, 0, "veth_xmit", "veth", 0x10, 5
        );
        assert_eq!(
            parse_list(&text),
            [
                row("ip_rcv", 0),
                Listed {
                    name: "veth_xmit".into(),
                    module: "veth".into(),
                    pos: 5
                }
            ]
        );
        assert!(parse_list("NAME\tMODULE\tADDRESS\tSKB_POSITION\n").is_empty());
    }

    #[test]
    fn sets_compare_by_name_and_allow_for_cut_names() {
        let long = "a".repeat(70);
        let ipft = [
            row("ip_rcv", 0),
            row("x5", 5),
            row(&long, 1),
            row("ip_rcv", 0),
        ];
        let anchor = [row("ip_rcv", 0), row(&long[..64], 1), row("gone", 2)];
        let sets = Sets::new(&ipft, &anchor);
        assert_eq!(sets.common, [long.clone(), "ip_rcv".into()]);
        assert_eq!(sets.only_ipft, [row("x5", 5)]);
        assert_eq!(sets.only_ipftrace2, [row("gone", 2)]);
        let json = sets.to_json(&json!(["x5"]));
        assert_eq!(json["only_ipft"][0]["attached"], false);
        assert_eq!(json["ipft_listed"], 4);
    }

    #[test]
    fn alternation_is_anchored_and_escaped() {
        let names = ["ip_rcv".to_string(), "f.isra.0".into(), "b".repeat(64)];
        assert_eq!(
            anchored_alternation(&names),
            format!(r"^(?:ip_rcv|f\.isra\.0|{}\w*)$", "b".repeat(64))
        );
    }

    #[test]
    fn ipftrace2_is_measured_on_the_common_set_only_when_it_differs_and_the_filter_on_the_full_one()
    {
        let same = Sets::new(&[row("a", 0), row("b", 5)], &[row("a", 0)]);
        let keys: Vec<String> = plan(&same).iter().map(Run::key).collect();
        assert_eq!(
            keys,
            [
                "ipft_full_real",
                "ipft_full_empty",
                "ipft_full_filter",
                "ipftrace2_full_real",
                "ipft_common_real",
                "ipft_common_empty"
            ]
        );
        let differs = Sets::new(&[row("a", 0)], &[row("a", 0), row("c", 1)]);
        assert!(plan(&differs)
            .iter()
            .any(|r| r.key() == "ipftrace2_common_real"));
    }

    #[test]
    fn reads_names_ipft_could_not_attach() {
        let err = "ipft: cannot attach bad_fn (vmlinux): not in available_filter_functions\n\
                   Trace ready!\n";
        assert_eq!(not_attached(err), ["bad_fn"]);
    }

    #[test]
    fn summary_keeps_medians_and_each_rounds_udp() {
        let rounds = [
            json!({"udp_kept": 0.2, "ready_s": 1.0, "attached": 5}),
            json!({"udp_kept": 0.1, "ready_s": 3.0, "attached": 5}),
            json!({"udp_kept": 0.3, "ready_s": 2.0, "attached": 5}),
        ];
        let s = summarize(&rounds);
        assert_eq!(s["udp_kept"], 0.2);
        assert_eq!(s["ready_s"], 2.0);
        assert_eq!(s["attached"], 5);
        assert_eq!(s["udp_kept_rounds"], json!([0.2, 0.1, 0.3]));
        assert_eq!(median(&mut [1.0, 2.0]), Some(1.5));
    }
}
