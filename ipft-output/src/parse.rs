//! ipft's output parsed strictly, for the host tests and for the VM suite's
//! judge (xtask): the aggregate table in both layouts (function and
//! function_graph), the `-o json` lines and the attach line. A row that is
//! not byte for byte what ipftrace2's printf would produce is an error,
//! since users' scripts parse it too.
use std::{collections::BTreeMap, sync::OnceLock};

use regex::Regex;

/// One traced call (or return) of a packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub tstamp: u64,
    pub cpu: u32,
    pub module: String,
    /// The function or tracepoint name, without function_graph decoration.
    pub function: String,
    /// function_graph: a return (`}`, json `is_return`).
    pub is_return: bool,
    /// function_graph tables: leading spaces of the function column.
    pub indent: usize,
    /// ` (drop: NAME)` after the row, json `drop_reason`.
    pub drop_reason: Option<String>,
    /// json only: the skb pointer (`packet_id`), which the kernel reuses.
    pub packet_id: String,
    /// ` (caller: nf_hook_slow+0x8f)` after a dropping row, json `caller`.
    pub caller: Option<String>,
    /// `--stack`: the indented frame lines under the row, json `stack`.
    pub stack: Vec<String>,
    /// function_graph: a return's value as the table shows it after
    /// `} = ` (`-22 EINVAL`, `0`, `0xffff…`); json `retval` and `errno`.
    pub retval: Option<String>,
}

/// The rows of one packet, in output order.
#[derive(Clone, Debug, Default)]
pub struct Packet {
    pub rows: Vec<Row>,
    /// ipft's one-line description after `===` (`ICMP 127.0.0.1 -> …`), an
    /// addition to ipftrace2's layout; json `summary`.
    pub summary: Option<String>,
    /// json only: ipft's `packet` number, unique per run.
    pub packet: Option<u64>,
    /// json only: `parent_packet`, the packet a clone was made from.
    pub parent: Option<u64>,
    /// How it ended: the `fate: …` line ending its group, json
    /// `fate.text` (on its freeing line only).
    pub fate: Option<String>,
}

impl Packet {
    pub fn functions(&self) -> Vec<&str> {
        row_names(&self.rows)
    }
}

/// Which table layout to expect (`-t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracer {
    Function,
    FunctionGraph,
}

/// `printf("%-20s %3.3s %24.24s %32.32s\n", "Timestamp", "CPU", "Module", "Function")`;
/// function_graph's last column is `%-64.64s`, over its left-aligned tree.
pub fn table_header(tracer: Tracer) -> String {
    let (time, cpu, module, function) = ("Timestamp", "CPU", "Module", "Function");
    match tracer {
        Tracer::Function => format!("{time:<20} {cpu:>3.3} {module:>24.24} {function:>32.32}"),
        Tracer::FunctionGraph => {
            format!("{time:<20} {cpu:>3.3} {module:>24.24} {function:<64.64}")
        }
    }
}

/// The aggregate table printed on exit: a blank line, the header, then per
/// packet `===`, at most one summary line right after it (README, "What
/// each packet shows"), its rows (each maybe followed by its stack, a
/// frame a line indented by four spaces), and at most one `fate: …` line
/// last. Blank lines are allowed.
pub fn table(stdout: &str, tracer: Tracer) -> Result<Vec<Packet>, String> {
    let rest = stdout
        .strip_prefix('\n')
        .ok_or("the aggregate table must start with a blank line")?;
    let mut lines = rest.lines();
    let header = lines.next().unwrap_or_default();
    if header != table_header(tracer) {
        return Err(format!(
            "header is {header:?}, want {:?}",
            table_header(tracer)
        ));
    }
    let mut packets: Vec<Packet> = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if line == "===" {
            packets.push(Packet::default());
            continue;
        }
        if closing_summary(line) {
            // With `-w -` the table goes to stderr, where the summary follows it.
            continue;
        }
        let packet = packets
            .last_mut()
            .ok_or_else(|| format!("row before the first `===`: {line:?}"))?;
        if packet.fate.is_some() {
            return Err(format!("a line after the fate line: {line:?}"));
        }
        if let Some(fate) = line.strip_prefix("fate: ") {
            packet.fate = Some(fate.to_string());
            continue;
        }
        if let (Some(frame), Some(last)) = (line.strip_prefix("    "), packet.rows.last_mut()) {
            if !frame.is_empty() && !frame.starts_with(' ') {
                last.stack.push(frame.to_string());
                continue;
            }
        }
        match row(line, tracer) {
            Some(row) => packet.rows.push(row),
            None if packet.rows.is_empty() && packet.summary.is_none() => {
                packet.summary = Some(line.to_string())
            }
            None => return Err(format!("not a table row: {line:?}")),
        }
    }
    Ok(packets)
}

/// `%-20zu %03u %24.24s %32.32s` (function_graph: `%-64.64s` last), then
/// maybe ` (drop: NAME)` and `--field` values ` ( len: 84 … )`.
fn row(line: &str, tracer: Tracer) -> Option<Row> {
    let c = columns(tracer).captures(line)?;
    let (cell, rest) = (&c[4], &c[5]);
    let (function, is_return, indent, retval) = match tracer {
        Tracer::Function => (cell.trim_start().to_string(), false, 0, None),
        Tracer::FunctionGraph => graph_cell(cell)?,
    };
    let row = Row {
        tstamp: c[1].parse().ok()?,
        cpu: c[2].parse().ok()?,
        module: c[3].trim_start().to_string(),
        function,
        is_return,
        indent,
        drop_reason: drop_reason(rest)?,
        packet_id: String::new(),
        caller: caller(rest),
        stack: Vec::new(),
        retval,
    };
    let exact = printed(&row, tracer) == line[..line.len() - rest.len()];
    (exact && (row.is_return || !row.function.is_empty())).then_some(row)
}

/// A row's columns, loosely: what [`printed`] then checks byte for byte.
fn columns(tracer: Tracer) -> &'static Regex {
    static COLUMNS: OnceLock<[Regex; 2]> = OnceLock::new();
    let [function, graph] = COLUMNS.get_or_init(|| {
        let columns = |width| format!(r"^([0-9]+) +([0-9]{{3,}}) (.{{24}}) (.{{{width}}})(.*)$");
        [32, 64].map(|w| Regex::new(&columns(w)).unwrap())
    });
    match tracer {
        Tracer::Function => function,
        Tracer::FunctionGraph => graph,
    }
}

/// `row` as ipftrace2's printf prints it, up to the function column; for
/// function_graph two spaces per depth, then `name() {` or `}` (and ipft's
/// ` = value`).
fn printed(row: &Row, tracer: Tracer) -> String {
    let start = format!("{:<20} {:03} {:>24.24} ", row.tstamp, row.cpu, row.module);
    let call = match (tracer, row.is_return) {
        (Tracer::Function, _) => return format!("{start}{:>32.32}", row.function),
        (Tracer::FunctionGraph, true) => match &row.retval {
            Some(value) => format!("}} = {value}"),
            None => "}".to_string(),
        },
        (Tracer::FunctionGraph, false) => format!("{}() {{", row.function),
    };
    format!("{start}{:<64.64}", " ".repeat(row.indent) + &call)
}

/// function_graph's cell: `    name() {` (an entry) or `    }` (a return),
/// which may end in its value: `    } = -22 EINVAL`.
fn graph_cell(cell: &str) -> Option<(String, bool, usize, Option<String>)> {
    let body = cell.trim();
    let indent = cell.len() - cell.trim_start().len();
    if let Some(name) = body.strip_suffix("() {").filter(|n| !n.is_empty()) {
        return Some((name.to_string(), false, indent, None));
    }
    let retval = match body.strip_prefix('}')? {
        "" => None,
        value => Some(
            value
                .strip_prefix(" = ")
                .filter(|v| !v.is_empty())?
                .to_string(),
        ),
    };
    Some((String::new(), true, indent, retval))
}

/// What follows the function column: nothing, or ` (drop: NAME)` and/or
/// ` ( field: value … )`. `None` for anything else.
fn drop_reason(rest: &str) -> Option<Option<String>> {
    if rest.is_empty() {
        return Some(None);
    }
    if !rest.starts_with(" (") {
        return None;
    }
    let reason = rest
        .strip_prefix(" (drop: ")
        .and_then(|r| r.split_once(')'));
    Some(reason.map(|(name, _)| name.to_string()))
}

/// `12 packets: 9 delivered, 3 dropped (NO_SOCKET at __udp4_lib_rcv)`:
/// how the run's packets ended, on stderr.
pub fn closing_summary(line: &str) -> bool {
    static LINE: OnceLock<Regex> = OnceLock::new();
    let re = LINE.get_or_init(|| Regex::new(r"^[0-9]+ packets?: [0-9]+ [a-z]").unwrap());
    re.is_match(line)
}

/// ` (caller: SITE)` in what follows the function column.
fn caller(rest: &str) -> Option<String> {
    let (_, after) = rest.split_once(" (caller: ")?;
    Some(after.split_once(')')?.0.to_string())
}

/// Every line of `-o json`, in order: valid JSON starting with the
/// contract's keys in the contract's order; keys after them (`--field`
/// values, ipft's `packet`, `summary`, `drop_reason`…) are allowed. A last
/// line without `\n` (cut off) is an error.
pub fn json_rows(stdout: &str) -> Result<Vec<Row>, String> {
    ends_with_newline(stdout)?;
    stdout
        .lines()
        .map(|line| json_line(line).map(|(row, _)| row))
        .collect()
}

/// `-o json` grouped into packets: by ipft's `packet` number (the kernel
/// reuses skb pointers; the number is unique), by `packet_id` on lines
/// without one (ipftrace2's grouping). Rows by timestamp, packets by their
/// first row.
pub fn json(stdout: &str) -> Result<Vec<Packet>, String> {
    ends_with_newline(stdout)?;
    let mut by_packet: BTreeMap<String, Packet> = BTreeMap::new();
    for line in stdout.lines() {
        let (row, value) = json_line(line)?;
        let packet = value["packet"].as_u64();
        let key = packet.map_or(row.packet_id.clone(), |n| format!("#{n}"));
        let group = by_packet.entry(key).or_default();
        group.packet = packet;
        group.parent = group.parent.or(value["parent_packet"].as_u64());
        if let Some(summary) = value["summary"].as_str() {
            group.summary.get_or_insert_with(|| summary.to_string());
        }
        if let Some(fate) = value["fate"]["text"].as_str() {
            group.fate = Some(fate.to_string());
        }
        group.rows.push(row);
    }
    let mut packets: Vec<Packet> = by_packet.into_values().collect();
    for packet in &mut packets {
        packet.rows.sort_by_key(|r| r.tstamp);
    }
    packets.sort_by_key(|p| p.rows[0].tstamp);
    Ok(packets)
}

/// ipft writes whole lines: a last line without `\n` was cut off.
fn ends_with_newline(stdout: &str) -> Result<(), String> {
    match stdout.is_empty() || stdout.ends_with('\n') {
        true => Ok(()),
        false => Err("JSON output does not end with a newline".into()),
    }
}

/// Each return of a function_graph packet's rows, named by the entry it
/// closes (a table's returns have no name), with its value: `("nf_hook_slow",
/// Some("-1 EPERM"))`. A return with no open entry is left out.
pub fn returns(rows: &[Row]) -> Vec<(String, Option<String>)> {
    let mut open: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for r in rows {
        if !r.is_return {
            open.push(&r.function);
        } else if let Some(name) = open.pop() {
            out.push((name.to_string(), r.retval.clone()));
        }
    }
    out
}

/// A json return's `retval` (and `errno`), as the table shows them.
fn json_retval(v: &serde_json::Value) -> Option<String> {
    let value = match &v["retval"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(match v["errno"].as_str() {
        Some(errno) => format!("{value} {errno}"),
        None => value,
    })
}

/// One json line as a row, and the whole object for the keys ipft adds.
fn json_line(line: &str) -> Result<(Row, serde_json::Value), String> {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let shape = SHAPE.get_or_init(|| {
        Regex::new(concat!(
            r#"^\{"packet_id":"0x[0-9a-f]+","timestamp":[0-9]+,"processor_id":[0-9]+,"#,
            r#""module":"[^"]+","function":"[^"]+","is_return":(true|false)[,}]"#
        ))
        .unwrap()
    });
    if !shape.is_match(line) {
        return Err(format!("JSON line has the wrong shape: {line}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let row = Row {
        tstamp: v["timestamp"].as_u64().unwrap_or_default(),
        cpu: v["processor_id"].as_u64().unwrap_or_default() as u32,
        module: text("module"),
        function: text("function"),
        is_return: v["is_return"].as_bool().unwrap_or_default(),
        indent: 0,
        drop_reason: v["drop_reason"].as_str().map(str::to_string),
        packet_id: text("packet_id"),
        caller: v["caller"].as_str().map(str::to_string),
        retval: json_retval(&v),
        stack: v["stack"]
            .as_array()
            .map(|frames| {
                frames
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok((row, v))
}

/// Counts from `Attaching program (total N, succeeded N, failed N, filtered: N)`.
#[derive(Debug, PartialEq, Eq)]
pub struct Attach {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub filtered: u64,
}

/// The last attach line on stderr (a terminal gets it redrawn with `\r`).
pub fn attach(stderr: &str) -> Option<Attach> {
    static LINE: OnceLock<Regex> = OnceLock::new();
    let line = LINE.get_or_init(|| {
        Regex::new(
            r"Attaching program \(total (\d+), succeeded (\d+), failed (\d+), filtered: (\d+)\)",
        )
        .unwrap()
    });
    let c = line.captures_iter(stderr).last()?;
    let n = |i: usize| c[i].parse().ok();
    Some(Attach {
        total: n(1)?,
        succeeded: n(2)?,
        failed: n(3)?,
        filtered: n(4)?,
    })
}

/// [`table`] of the function tracer for a test: panics with the whole
/// stdout; the packets' rows in order.
pub fn parse_table(stdout: &str) -> Vec<Vec<Row>> {
    let packets = table(stdout, Tracer::Function);
    let packets = packets.unwrap_or_else(|e| panic!("{e}; the whole stdout:\n{stdout}"));
    packets.into_iter().map(|p| p.rows).collect()
}

/// [`json_rows`] for a test: panics with the whole stdout.
pub fn parse_json(stdout: &str) -> Vec<Row> {
    json_rows(stdout).unwrap_or_else(|e| panic!("{e}; the whole stdout:\n{stdout}"))
}

/// [`json`] for a test: each packet's rows, panicking with the whole stdout.
pub fn parse_json_packets(stdout: &str) -> Vec<Vec<Row>> {
    let packets = json(stdout).unwrap_or_else(|e| panic!("{e}; the whole stdout:\n{stdout}"));
    packets.into_iter().map(|p| p.rows).collect()
}

/// Whether `want` appears in `names` in this order (not necessarily adjacent).
pub fn in_order(names: &[&str], want: &[&str]) -> bool {
    let mut rest = names.iter();
    want.iter().all(|w| rest.any(|n| n == w))
}

pub fn row_names(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.function.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function_row(tstamp: u64, cpu: u32, module: &str, function: &str) -> String {
        format!("{tstamp:<20} {cpu:03} {module:>24.24} {function:>32.32}")
    }

    fn graph_row(tstamp: u64, cell: &str) -> String {
        format!("{tstamp:<20} {:03} {:>24.24} {cell:<64.64}", 0, "vmlinux")
    }

    fn function_table(lines: &[String]) -> String {
        format!(
            "\n{}\n{}\n",
            table_header(Tracer::Function),
            lines.join("\n")
        )
    }

    #[test]
    fn table_round_trip() {
        let row = function_row(25340022557487, 1, "veth", "veth_xmit");
        let packets = table(&function_table(&["===".into(), row]), Tracer::Function).unwrap();
        assert_eq!(packets.len(), 1);
        let row = &packets[0].rows[0];
        assert_eq!((row.tstamp, row.cpu), (25340022557487, 1));
        assert_eq!(
            (row.module.as_str(), row.function.as_str()),
            ("veth", "veth_xmit")
        );
    }

    #[test]
    fn table_reads_a_summary_a_drop_reason_and_fields() {
        let row = function_row(7, 0, "vmlinux", "kfree_skb");
        let lines = [
            "===".into(),
            "UDP 127.0.0.1:1 -> 127.0.0.1:9 len 47 dev lo".into(),
            format!("{row} (drop: NO_SOCKET) ( len: 84 )"),
        ];
        let packet = &table(&function_table(&lines), Tracer::Function).unwrap()[0];
        assert_eq!(
            packet.summary.as_deref(),
            Some("UDP 127.0.0.1:1 -> 127.0.0.1:9 len 47 dev lo")
        );
        assert_eq!(packet.rows[0].function, "kfree_skb");
        assert_eq!(packet.rows[0].drop_reason.as_deref(), Some("NO_SOCKET"));
    }

    #[test]
    fn table_reads_a_caller_a_stack_and_the_fate() {
        let row = function_row(7, 0, "vmlinux", "kfree_skb");
        let lines = [
            "===".into(),
            format!("{row} (drop: NETFILTER_DROP) (caller: nf_hook_slow+0x8f)"),
            "    sk_skb_reason_drop+0x90".into(),
            "    nf_hook_slow+0x8f".into(),
            "fate: dropped at nf_hook_slow+0x8f (NETFILTER_DROP)".into(),
            "===".into(),
            function_row(8, 0, "vmlinux", "netif_rx"),
            "fate: still in flight when tracing stopped".into(),
        ];
        let packets = table(&function_table(&lines), Tracer::Function).unwrap();
        let row = &packets[0].rows[0];
        assert_eq!(row.drop_reason.as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(row.caller.as_deref(), Some("nf_hook_slow+0x8f"));
        assert_eq!(row.stack, ["sk_skb_reason_drop+0x90", "nf_hook_slow+0x8f"]);
        assert_eq!(
            packets[0].fate.as_deref(),
            Some("dropped at nf_hook_slow+0x8f (NETFILTER_DROP)")
        );
        assert_eq!(packets[1].rows.len(), 1);
        assert_eq!(
            packets[1].fate.as_deref(),
            Some("still in flight when tracing stopped")
        );
        // Nothing of the packet after its fate; no frame before a row.
        let late = ["===".into(), "fate: consumed".into(), row_line()];
        assert!(table(&function_table(&late), Tracer::Function).is_err());
        let summary = [
            "===".into(),
            row_line(),
            "fate: consumed".into(),
            "1 packet: 1 consumed".into(),
        ];
        assert!(table(&function_table(&summary), Tracer::Function).is_ok());
        let early = [
            "===".into(),
            "UDP summary".into(),
            "    nf_hook_slow+0x8f".into(),
        ];
        assert!(table(&function_table(&early), Tracer::Function).is_err());
    }

    fn row_line() -> String {
        function_row(9, 0, "vmlinux", "netif_rx")
    }

    #[test]
    fn table_rejects_a_second_non_row() {
        let lines = ["===".into(), "summary".into(), "summary".into()];
        let err = table(&function_table(&lines), Tracer::Function).unwrap_err();
        assert!(err.contains("not a table row"), "{err}");
    }

    #[test]
    fn table_rejects_a_misaligned_row() {
        let row = function_row(1, 1, "vmlinux", "netif_rx");
        let shifted = format!("{} {}", &row[..20], &row[20..]);
        let lines = ["===".into(), row, shifted];
        let err = table(&function_table(&lines), Tracer::Function).unwrap_err();
        assert!(err.contains("not a table row"), "{err}");
    }

    #[test]
    fn table_needs_the_blank_line_and_the_header() {
        assert!(table("nothing\n", Tracer::Function).is_err());
        let graph_header = format!("\n{}\n", table_header(Tracer::FunctionGraph));
        assert!(table(&graph_header, Tracer::Function).is_err());
    }

    #[test]
    fn graph_rows_nest() {
        let lines = [
            graph_row(1, "ip_rcv() {"),
            graph_row(2, "  ip_rcv_finish() {"),
            graph_row(3, "  } = -22 EINVAL"),
            graph_row(4, "}"),
        ];
        let stdout = format!(
            "\n{}\n===\n{}\n",
            table_header(Tracer::FunctionGraph),
            lines.join("\n")
        );
        let rows = &table(&stdout, Tracer::FunctionGraph).unwrap()[0].rows;
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.function.as_str(),
                    r.indent,
                    r.is_return,
                    r.retval.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("ip_rcv", 0, false, None),
                ("ip_rcv_finish", 2, false, None),
                ("", 2, true, Some("-22 EINVAL")),
                ("", 0, true, None),
            ]
        );
        for bad in ["  } =", "  } = ", "  }x", "  } -22"] {
            let stdout = format!(
                "\n{}\n===\n{}\n{}\n",
                table_header(Tracer::FunctionGraph),
                graph_row(1, "ip_rcv() {"),
                graph_row(2, bad)
            );
            assert!(table(&stdout, Tracer::FunctionGraph).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_returns_carry_their_value() {
        let line = r#"{"packet_id":"0x1","timestamp":1,"processor_id":0,"module":"vmlinux","function":"f","is_return":true,"packet":1,"retval":-22,"errno":"EINVAL"}"#;
        let (row, _) = super::json_line(line).unwrap();
        assert_eq!(row.retval.as_deref(), Some("-22 EINVAL"));
        let line = r#"{"packet_id":"0x1","timestamp":1,"processor_id":0,"module":"vmlinux","function":"f","is_return":true,"packet":1,"retval":"0xffff888003a1c000"}"#;
        let (row, _) = super::json_line(line).unwrap();
        assert_eq!(row.retval.as_deref(), Some("0xffff888003a1c000"));
    }

    fn json_line(id: &str, ts: u64, function: &str, extra: &str) -> String {
        format!(
            r#"{{"packet_id":"{id}","timestamp":{ts},"processor_id":0,"module":"vmlinux","function":"{function}","is_return":false{extra}}}"#
        )
    }

    #[test]
    fn json_rows_in_order() {
        let line = json_line("0xffff8dee8aea9700", 25340022557487, "ip_rcv", "");
        let rows = json_rows(&format!("{line}\n")).unwrap();
        assert_eq!(rows[0].function, "ip_rcv");
        assert_eq!(rows[0].packet_id, "0xffff8dee8aea9700");
        assert!(json_rows(&line).is_err(), "cut off without a newline");
    }

    #[test]
    fn json_rejects_reordered_keys() {
        let line = r#"{"timestamp":1,"packet_id":"0x1","processor_id":0,"module":"vmlinux","function":"f","is_return":false}"#;
        let err = json_rows(&format!("{line}\n")).unwrap_err();
        assert!(err.contains("wrong shape"), "{err}");
    }

    #[test]
    fn json_groups_by_packet_number_else_by_pointer() {
        let numbered = [
            json_line("0x1", 10, "a", r#","packet":1"#),
            json_line("0x1", 20, "b", r#","packet":2,"parent_packet":1"#),
            json_line("0x1", 15, "c", r#","packet":1,"drop_reason":"NO_SOCKET""#),
        ];
        let packets = json(&(numbered.join("\n") + "\n")).unwrap();
        assert_eq!(packets[0].functions(), ["a", "c"]);
        assert_eq!(packets[0].rows[1].drop_reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!((packets[1].packet, packets[1].parent), (Some(2), Some(1)));

        let pointers = [
            json_line("0x2", 5, "b", ""),
            json_line("0x1", 3, "y", ""),
            json_line("0x2", 4, "a", ""),
            json_line("0x1", 9, "z", ""),
        ];
        let packets = json(&(pointers.join("\n") + "\n")).unwrap();
        let names: Vec<Vec<&str>> = packets.iter().map(Packet::functions).collect();
        assert_eq!(names, [vec!["y", "z"], vec!["a", "b"]]);
    }

    #[test]
    fn attach_line_last_one_wins() {
        let err = "Attaching program (total 3, succeeded 1, failed 0, filtered: 0)\rAttaching program (total 3, succeeded 2, failed 1, filtered: 0)\nTrace ready!\n";
        let want = Attach {
            total: 3,
            succeeded: 2,
            failed: 1,
            filtered: 0,
        };
        assert_eq!(attach(err), Some(want));
        assert_eq!(attach("Trace ready!"), None);
    }

    #[test]
    fn order() {
        assert!(in_order(&["a", "x", "b", "c"], &["a", "b", "c"]));
        assert!(!in_order(&["b", "a"], &["a", "b"]));
    }
}
