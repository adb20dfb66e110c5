//! The side-by-side table: ipft and ipftrace2 measured in one boot (see
//! [`super::anchor`]), with the ratios that have targets.
use serde_json::Value;

/// Targets for unmarked UDP on the common set: ipft keeps at
/// least this much of what ipftrace2 keeps…
const VS_IPFTRACE2: f64 = 1.2;
/// …and of what an empty program on the same functions keeps.
const VS_FLOOR: f64 = 0.8;

/// Targets for `-f` on ipft's full set: unmatched UDP keeps at
/// least this much of what it keeps with the mark…
const FILTER_VS_MARK: f64 = 0.9;
/// …and of what it keeps with the empty program; ready at most this much
/// later than with the mark.
const FILTER_VS_FLOOR: f64 = 0.5;
const FILTER_READY_ADDED: f64 = 0.1;

/// Rounds of one run that differ by more than this factor (largest over
/// smallest) say the host's load, not the tools, set the figure: the
/// targets are then not judged.
const UNSTABLE: f64 = 1.25;

/// Rows of the table: run key, set, tool, program.
const ROWS: &[(&str, &str, &str, &str)] = &[
    ("ipft_full_real", "ipft's full set", "ipft", "real"),
    ("ipft_full_empty", "ipft's full set", "ipft", "empty"),
    ("ipft_full_filter", "ipft's full set", "ipft", "-f"),
    (
        "ipftrace2_full_real",
        "ipftrace2's set",
        "ipftrace2",
        "real",
    ),
    ("ipft_common_real", "common set", "ipft", "real"),
    ("ipft_common_empty", "common set", "ipft", "empty"),
    ("ipftrace2_common_real", "common set", "ipftrace2", "real"),
];

/// Prints the side by side of every result that has one.
pub fn print(results: &[Value]) {
    for r in results.iter().filter(|r| r["anchor"].is_object()) {
        print_one(r);
    }
}

fn print_one(r: &Value) {
    let a = &r["anchor"];
    println!();
    println!(
        "Side by side with ipftrace2: {} ({}), one boot, median of {} interleaved rounds;",
        a["backend"].as_str().unwrap_or("?"),
        r["where"].as_str().unwrap_or("?"),
        a["rounds"]
    );
    println!(
        "UDP ({}) against the throughput measured just before each run.",
        r["udp_method"].as_str().unwrap_or("?")
    );
    if let Some(e) = a["error"].as_str() {
        println!("side by side failed: {e}");
        return;
    }
    println!("{}", sets_line(&a["sets"]));
    println!(
        "{:<16} {:<10} {:<7} {:>8} {:>8} {:>8} {:>9}  rounds",
        "Set", "Tool", "Program", "Attached", "Ready", "Exit", "UDP kept"
    );
    for (key, set, tool, program) in ROWS {
        let run = &a["runs"][key];
        if run.is_object() {
            println!("{}", run_line(run, set, tool, program));
        }
    }
    for line in ratio_lines(&a["runs"]) {
        println!("{line}");
    }
}

/// What each tool lists and how the lists differ.
fn sets_line(sets: &Value) -> String {
    let empty = Vec::new();
    let only_ipft = sets["only_ipft"].as_array().unwrap_or(&empty);
    let mut by_pos = [0usize; 6];
    for f in only_ipft {
        if let Some(p) = f["pos"].as_u64().filter(|&p| p < 6) {
            by_pos[p as usize] += 1;
        }
    }
    let unattached = only_ipft
        .iter()
        .filter(|f| f["attached"] == Value::Bool(false))
        .count();
    format!(
        "Listed (-l): ipft {}, ipftrace2 {}, names in both {}; only ipft {} \
         (by skb position {by_pos:?}; {unattached} of them not attachable), only ipftrace2 {}",
        sets["ipft_listed"],
        sets["ipftrace2_listed"],
        sets["common_names"],
        only_ipft.len(),
        sets["only_ipftrace2"].as_array().map_or(0, Vec::len),
    )
}

fn run_line(run: &Value, set: &str, tool: &str, program: &str) -> String {
    let secs = |k: &str| run[k].as_f64().map_or("-".into(), |v| format!("{v:.2} s"));
    let rounds: Vec<String> = run["udp_kept_rounds"]
        .as_array()
        .map(|a| a.iter().map(|v| fixed(v.as_f64(), 3)).collect())
        .unwrap_or_default();
    let mut line = format!(
        "{set:<16} {tool:<10} {program:<7} {:>8} {:>8} {:>8} {:>9}  {}",
        run["attached"]
            .as_u64()
            .map_or("-".into(), |n| n.to_string()),
        secs("ready_s"),
        secs("exit_s"),
        fixed(run["udp_kept"].as_f64(), 3),
        rounds.join(" "),
    );
    if let Some(e) = run["error"].as_str() {
        line += &format!("  error: {}", e.chars().take(200).collect::<String>());
    }
    line
}

/// ipft against ipftrace2 on their own sets and on the common one, and
/// against the empty-program floor, with their targets.
fn ratio_lines(runs: &Value) -> Vec<String> {
    let get = |run: &str, key: &str| runs[run][key].as_f64();
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let own = |key| ratio(get("ipft_full_real", key), get("ipftrace2_full_real", key));
    // Without a run of its own on the common set, ipftrace2's set is it.
    let anchor_common = match runs["ipftrace2_common_real"].is_object() {
        true => "ipftrace2_common_real",
        false => "ipftrace2_full_real",
    };
    let common_vs = ratio(
        get("ipft_common_real", "udp_kept"),
        get(anchor_common, "udp_kept"),
    );
    let common_floor = ratio(
        get("ipft_common_real", "udp_kept"),
        get("ipft_common_empty", "udp_kept"),
    );
    let steady = |runs_used: &[&str]| runs_used.iter().all(|r| !unstable(&runs[*r]));
    let vs_steady = steady(&["ipft_common_real", anchor_common]);
    let floor_steady = steady(&["ipft_common_real", "ipft_common_empty"]);
    let full_floor = ratio(
        get("ipft_full_real", "udp_kept"),
        get("ipft_full_empty", "udp_kept"),
    );
    let mut lines = vec![
        format!(
            "ipft/ipftrace2, each on its own set: attached {}, ready {}, exit {}, UDP kept {}",
            fixed(own("attached"), 2),
            fixed(own("ready_s"), 2),
            fixed(own("exit_s"), 2),
            fixed(own("udp_kept"), 2),
        ),
        format!(
            "common set, UDP kept: ipft/ipftrace2 {} {}; ipft real/empty floor {} {}",
            fixed(common_vs, 2),
            verdict(common_vs, VS_IPFTRACE2, vs_steady),
            fixed(common_floor, 2),
            verdict(common_floor, VS_FLOOR, floor_steady),
        ),
        format!(
            "ipft's full set, UDP kept: ipft real/empty floor {}",
            fixed(full_floor, 2)
        ),
    ];
    if runs["ipft_full_filter"].is_object() {
        lines.push(filter_line(runs));
    }
    lines
}

/// `-f` against the mark and the floor on ipft's full set, with its targets.
fn filter_line(runs: &Value) -> String {
    let get = |run: &str, key: &str| runs[run][key].as_f64();
    let kept = |run| get(run, "udp_kept");
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let vs_mark = ratio(kept("ipft_full_filter"), kept("ipft_full_real"));
    let vs_floor = ratio(kept("ipft_full_filter"), kept("ipft_full_empty"));
    let steady = |a: &str, b: &str| !unstable(&runs[a]) && !unstable(&runs[b]);
    let added = get("ipft_full_filter", "ready_s")
        .zip(get("ipft_full_real", "ready_s"))
        .map(|(f, m)| f - m);
    let ready = match added {
        Some(a) if a <= FILTER_READY_ADDED => {
            format!("{a:+.2} s (target <= +{FILTER_READY_ADDED} s: met)")
        }
        Some(a) => format!("{a:+.2} s (target <= +{FILTER_READY_ADDED} s: NOT met)"),
        None => "-".into(),
    };
    format!(
        "-f '{}' on ipft's full set, UDP kept: -f/-m {} {}; -f/empty floor {} {}; ready {ready}",
        super::anchor::FILTER,
        fixed(vs_mark, 2),
        verdict(
            vs_mark,
            FILTER_VS_MARK,
            steady("ipft_full_filter", "ipft_full_real")
        ),
        fixed(vs_floor, 2),
        verdict(
            vs_floor,
            FILTER_VS_FLOOR,
            steady("ipft_full_filter", "ipft_full_empty")
        ),
    )
}

/// Whether a run's UDP rounds disagree too much to judge a target.
fn unstable(run: &Value) -> bool {
    let kept: Vec<f64> = run["udp_kept_rounds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let (lo, hi) = kept
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    kept.len() > 1 && hi > lo * UNSTABLE
}

fn verdict(v: Option<f64>, at_least: f64, steady: bool) -> String {
    match v {
        Some(_) if !steady => {
            format!("(target >= {at_least}: not judged, rounds differ by over 25%; try --icount)")
        }
        Some(v) if v >= at_least => format!("(target >= {at_least}: met)"),
        Some(_) => format!("(target >= {at_least}: NOT met)"),
        None => String::new(),
    }
}

fn fixed(v: Option<f64>, places: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.places$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ratios_use_ipftrace2s_set_as_the_common_one_when_equal() {
        let runs = json!({
            "ipft_full_real": {"udp_kept": 0.1, "attached": 1700, "ready_s": 1.0, "exit_s": 0.5},
            "ipft_full_empty": {"udp_kept": 0.25},
            "ipftrace2_full_real": {"udp_kept": 0.2, "attached": 1500, "ready_s": 2.0, "exit_s": 0.5},
            "ipft_common_real": {"udp_kept": 0.26},
            "ipft_common_empty": {"udp_kept": 0.4},
        });
        let lines = ratio_lines(&runs);
        assert_eq!(
            lines[0],
            "ipft/ipftrace2, each on its own set: attached 1.13, ready 0.50, exit 1.00, UDP kept 0.50"
        );
        assert_eq!(
            lines[1],
            "common set, UDP kept: ipft/ipftrace2 1.30 (target >= 1.2: met); \
             ipft real/empty floor 0.65 (target >= 0.8: NOT met)"
        );
        assert_eq!(
            lines[2],
            "ipft's full set, UDP kept: ipft real/empty floor 0.40"
        );
    }

    #[test]
    fn the_filter_is_judged_against_the_mark_and_the_floor() {
        let runs = json!({
            "ipft_full_real": {"udp_kept": 0.30, "ready_s": 1.00},
            "ipft_full_empty": {"udp_kept": 0.40},
            "ipft_full_filter": {"udp_kept": 0.285, "ready_s": 1.15},
        });
        let lines = ratio_lines(&runs);
        assert_eq!(
            lines[3],
            "-f 'udp and dst port 7777' on ipft's full set, UDP kept: -f/-m 0.95 (target >= 0.9: met); \
             -f/empty floor 0.71 (target >= 0.5: met); ready +0.15 s (target <= +0.1 s: NOT met)"
        );
    }

    #[test]
    fn targets_are_not_judged_on_rounds_that_disagree() {
        let runs = json!({
            "ipft_full_real": {"udp_kept": 0.1},
            "ipft_full_empty": {"udp_kept": 0.25},
            "ipftrace2_full_real": {"udp_kept": 0.2, "udp_kept_rounds": [0.2, 0.21, 0.19]},
            "ipft_common_real": {"udp_kept": 0.3, "udp_kept_rounds": [0.3, 2.2, 0.1]},
            "ipft_common_empty": {"udp_kept": 0.25, "udp_kept_rounds": [0.25]},
        });
        let lines = ratio_lines(&runs);
        assert!(
            lines[1].contains("1.50 (target >= 1.2: not judged"),
            "{}",
            lines[1]
        );
        assert!(!unstable(&runs["ipftrace2_full_real"]));
    }

    #[test]
    fn sets_line_counts_positions_and_unattached() {
        let sets = json!({
            "ipft_listed": 3, "ipftrace2_listed": 1, "common_names": 1,
            "only_ipft": [{"pos": 5, "attached": true}, {"pos": 0, "attached": false}],
            "only_ipftrace2": [],
        });
        let line = sets_line(&sets);
        assert!(
            line.contains("[1, 0, 0, 0, 0, 1]; 1 of them not attachable"),
            "{line}"
        );
    }
}
