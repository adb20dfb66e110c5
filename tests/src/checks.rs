//! Assertions shared by the tracing tests.
use crate::{
    capabilities, kernel,
    parse::{self, in_order, row_names, Row},
    Output,
};

/// Each packet of an aggregate table: rows in timestamp order, core-kernel
/// tracepoints, real CPUs, timestamps taken between `start_ns` and `end_ns`
/// (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns), and `path` in order.
/// Packets ordered by their first timestamp.
pub fn packets(packets: &[Vec<Row>], path: &[&str], start_ns: u64, end_ns: u64, out: &Output) {
    let cpus = kernel::possible_cpus();
    for (i, rows) in packets.iter().enumerate() {
        assert!(!rows.is_empty(), "packet {i} has no rows\n{out}");
        assert!(
            rows.is_sorted_by_key(|r| r.tstamp),
            "packet {i} is not sorted by timestamp\n{out}"
        );
        for row in rows {
            assert_eq!(
                row.module, "vmlinux",
                "tracepoints belong to vmlinux\n{out}"
            );
            assert!(row.cpu < cpus, "cpu {} of {cpus}\n{out}", row.cpu);
            assert!(
                (start_ns..=end_ns).contains(&row.tstamp),
                "timestamp {} is not CLOCK_MONOTONIC between {start_ns} and {end_ns}\n{out}",
                row.tstamp
            );
        }
        let names = row_names(rows);
        assert!(
            in_order(&names, path),
            "packet {i} is {names:?}, which lacks {path:?} in this order\n{out}"
        );
    }
    let firsts: Vec<u64> = packets.iter().map(|p| p[0].tstamp).collect();
    assert!(
        firsts.is_sorted(),
        "packets are not ordered by first timestamp\n{out}"
    );
}

/// A clean run to SIGINT/SIGTERM: exit 0, and stderr as the contract has it
/// when stderr is not a terminal: with `-b auto` first the line naming the
/// backend this kernel allows and why, then the attach line, `Trace
/// ready!`, progress counting every row printed, no `\r`, no loss.
pub fn clean_exit(out: &Output, rows: usize) {
    assert_eq!(
        out.code(),
        Some(0),
        "ipft must exit 0 on SIGINT/SIGTERM\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "ipft panicked\n{out}");
    assert!(
        !out.stderr.contains('\r'),
        "stderr is not a tty: plain lines, no \\r\n{out}"
    );
    assert!(
        !out.stderr.contains("Lost"),
        "a handful of packets must not lose events\n{out}"
    );
    let lines = out.stderr_lines();
    let ready = lines.iter().position(|l| *l == "Trace ready!");
    assert!(ready.is_some(), "no `Trace ready!` line\n{out}");
    let attach = lines
        .iter()
        .position(|l| l.starts_with("Attaching program"));
    let attach = attach.unwrap_or_else(|| panic!("no attach line\n{out}"));
    let said = match out.backend_asked() {
        "auto" => vec![capabilities().auto_line()],
        _ => Vec::new(),
    };
    let why = "only `-b auto` prints a line (backend and why) before attaching";
    assert_eq!(lines[..attach], said, "{why}\n{out}");
    let attach = parse::attach(&out.stderr);
    assert!(attach.is_some(), "malformed attach line\n{out}");
    if rows > 0 {
        assert_eq!(
            out.got_traces(),
            Some(rows as u64),
            "`Got N traces` must count every row\n{out}"
        );
    }
}

/// The sum of all packets' rows.
pub fn row_count(packets: &[Vec<Row>]) -> usize {
    packets.iter().map(Vec::len).sum()
}

/// One packet's function_graph rows: every entry has its return, each row
/// indented two spaces per depth, never below depth 0. Returns the deepest
/// nesting.
pub fn nesting(rows: &[Row], out: &Output) -> usize {
    let (mut depth, mut deepest) = (0usize, 0);
    for row in rows {
        if row.is_return {
            assert!(depth > 0, "a return at depth 0\n{out}");
            depth -= 1;
        }
        let at = format!("{} at depth {depth}", row.function);
        assert_eq!(row.indent, 2 * depth, "{at}: two spaces a level\n{out}");
        if !row.is_return {
            depth += 1;
        }
        deepest = deepest.max(depth);
    }
    assert_eq!(depth, 0, "entries without their returns\n{out}");
    deepest
}
