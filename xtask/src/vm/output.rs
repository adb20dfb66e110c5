//! Parsers for what ipft prints: the aggregate table, JSON lines and the
//! attach progress line. Strict on purpose: a row that does not follow the
//! documented layout is an error, since users' scripts parse it too.
use std::collections::BTreeMap;

/// One traced call (or return) of a packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub tstamp: u64,
    pub cpu: u32,
    pub module: String,
    /// The function name, without function_graph decoration.
    pub function: String,
    pub is_return: bool,
    /// function_graph only: leading spaces of the function column.
    pub indent: usize,
    /// `(drop: NAME)` after the row, json `drop_reason`.
    pub drop_reason: Option<String>,
    /// json only: the skb pointer (`packet_id`), which the kernel reuses.
    pub packet_id: String,
}

/// The rows of one packet, in output order.
#[derive(Debug, Default)]
pub struct Group {
    pub rows: Vec<Row>,
    /// ipft's one-line description after `===` (`ICMP 127.0.0.1 -> …`), an
    /// addition to ipftrace2's layout.
    pub summary: Option<String>,
    /// json only: ipft's `packet` number, unique per run.
    pub packet: Option<u64>,
    /// json only: `parent_packet`, the packet a clone was made from.
    pub parent: Option<u64>,
}

impl Group {
    pub fn functions(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r.function.as_str()).collect()
    }
}

const HEADER: &str = "Timestamp";

/// The aggregate table printed on SIGINT.
pub fn aggregate(stdout: &str, graph: bool) -> Result<Vec<Group>, String> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(HEADER));
    let header = lines
        .next()
        .ok_or("no aggregate table (no `Timestamp … Function` header) on stdout")?;
    let expected = if graph {
        format!(
            "{:<20} {:>3.3} {:>24.24} {:<64.64}",
            "Timestamp", "CPU", "Module", "Function"
        )
    } else {
        format!(
            "{:<20} {:>3.3} {:>24.24} {:>32.32}",
            "Timestamp", "CPU", "Module", "Function"
        )
    };
    if header.trim_end() != expected.trim_end() {
        return Err(format!(
            "header {header:?} differs from ipftrace2's {expected:?}"
        ));
    }
    let mut groups: Vec<Group> = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        if line == "===" {
            groups.push(Group::default());
            continue;
        }
        let group = groups
            .last_mut()
            .ok_or_else(|| format!("row before the first `===`: {line:?}"))?;
        match table_row(line, graph) {
            Ok(row) => group.rows.push(row),
            // Only the line right after `===` may describe the packet.
            Err(_) if group.rows.is_empty() && group.summary.is_none() => {
                group.summary = Some(line.to_string())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(groups)
}

/// `%-20zu %03u %24.24s %32.32s` (function_graph: `%-64.64s` last).
fn table_row(line: &str, graph: bool) -> Result<Row, String> {
    let bad = || format!("row does not follow `%-20zu %03u %24.24s %s`: {line:?}");
    if line.len() < 51 || !line.is_char_boundary(50) {
        return Err(bad());
    }
    let tstamp = line[..20].trim_end().parse().map_err(|_| bad())?;
    let cpu_text = &line[21..24];
    if !cpu_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let cpu = cpu_text.parse().map_err(|_| bad())?;
    let module = line[25..49].trim_start().to_string();
    let column = &line[50..];
    let (column, drop_reason) = match column.split_once(" (drop: ") {
        Some((cell, rest)) => (cell, rest.split_once(')').map(|(r, _)| r.to_string())),
        None => (column, None),
    };
    let (function, is_return, indent) = if graph {
        graph_cell(column)
    } else {
        (column.trim_start().to_string(), false, 0)
    };
    if function.is_empty() && !is_return || module.is_empty() {
        return Err(bad());
    }
    Ok(Row {
        tstamp,
        cpu,
        module,
        function,
        is_return,
        indent,
        drop_reason,
        packet_id: String::new(),
    })
}

/// `    name() {` (entry) or `    }` (return).
fn graph_cell(cell: &str) -> (String, bool, usize) {
    let cell = cell.trim_end();
    let indent = cell.len() - cell.trim_start().len();
    let body = cell.trim_start();
    match body.strip_suffix("() {") {
        Some(name) => (name.to_string(), false, indent),
        None => (String::new(), body == "}", indent),
    }
}

/// `-o json`: one object per line, grouped by ipft's `packet` number (by
/// `packet_id` where there is none: the kernel reuses skb pointers, the
/// number is unique), groups ordered by their first row, rows by timestamp.
pub fn json(stdout: &str) -> Result<Vec<Group>, String> {
    let mut by_packet: BTreeMap<String, Group> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
        let field = |k: &str| v.get(k).ok_or_else(|| format!("no {k:?} in {line:?}"));
        let id = field("packet_id")?
            .as_str()
            .ok_or("packet_id is not a string")?
            .to_string();
        let number = |k: &str| {
            field(k).and_then(|x| {
                x.as_u64()
                    .ok_or_else(|| format!("{k:?} is not a number in {line:?}"))
            })
        };
        let text = |k: &str| {
            field(k).and_then(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{k:?} is not a string in {line:?}"))
            })
        };
        let row = Row {
            tstamp: number("timestamp")?,
            cpu: number("processor_id")? as u32,
            module: text("module")?,
            function: text("function")?,
            is_return: field("is_return")?
                .as_bool()
                .ok_or("is_return is not a boolean")?,
            indent: 0,
            drop_reason: v
                .get("drop_reason")
                .and_then(|x| x.as_str())
                .map(str::to_string),
            packet_id: id.clone(),
        };
        let packet = v.get("packet").and_then(|x| x.as_u64());
        let key = packet.map_or(id, |n| format!("#{n}"));
        let group = by_packet.entry(key).or_default();
        group.packet = packet;
        group.parent = group
            .parent
            .or_else(|| v.get("parent_packet").and_then(|x| x.as_u64()));
        if let Some(s) = v.get("summary").and_then(|x| x.as_str()) {
            group.summary.get_or_insert_with(|| s.to_string());
        }
        group.rows.push(row);
    }
    let mut groups: Vec<Group> = by_packet.into_values().collect();
    for g in &mut groups {
        g.rows.sort_by_key(|r| r.tstamp);
    }
    groups.sort_by_key(|g| g.rows.first().map(|r| r.tstamp));
    Ok(groups)
}

/// Counts from the last `Attaching program (total N, succeeded N, failed N, filtered: N)`.
#[derive(Debug, PartialEq, Eq)]
pub struct Attach {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub filtered: u64,
}

pub fn attach(stderr: &str) -> Option<Attach> {
    let line = stderr
        .split(['\r', '\n'])
        .rfind(|l| l.contains("Attaching program ("))?;
    let inner = line.split_once('(')?.1.split_once(')')?.0;
    let mut counts = BTreeMap::new();
    for part in inner.split(',') {
        let (k, v) = part.trim().split_once([' ', ':'])?;
        counts.insert(
            k.trim(),
            v.trim_start_matches(':').trim().parse::<u64>().ok()?,
        );
    }
    Some(Attach {
        total: *counts.get("total")?,
        succeeded: *counts.get("succeeded")?,
        failed: *counts.get("failed")?,
        filtered: *counts.get("filtered")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aggregate() {
        let mut out = String::from("\n");
        out += &format!(
            "{:<20} {:>3.3} {:>24.24} {:>32.32}\n",
            "Timestamp", "CPU", "Module", "Function"
        );
        out += "===\n";
        out += &format!(
            "{:<20} {:03} {:>24.24} {:>32.32}\n",
            25340022557487u64, 1, "vmlinux", "ip_rcv"
        );
        out += &format!(
            "{:<20} {:03} {:>24.24} {:>32.32}\n",
            25340022557490u64, 1, "veth", "veth_xmit"
        );
        let groups = aggregate(
            &out.replace("===\n", "===\nICMP 127.0.0.1 -> 127.0.0.1\n"),
            false,
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].summary.as_deref(),
            Some("ICMP 127.0.0.1 -> 127.0.0.1")
        );
        assert_eq!(groups[0].functions(), ["ip_rcv", "veth_xmit"]);
        assert_eq!(groups[0].rows[1].module, "veth");
        assert_eq!(groups[0].rows[0].cpu, 1);
    }

    #[test]
    fn reads_the_drop_reason() {
        let mut out = format!(
            "{:<20} {:>3.3} {:>24.24} {:>32.32}\n===\n",
            "Timestamp", "CPU", "Module", "Function"
        );
        out += &format!(
            "{:<20} {:03} {:>24.24} {:>32.32} (drop: NETFILTER_DROP)\n",
            1, 0, "vmlinux", "kfree_skb_reason"
        );
        let row = &aggregate(&out, false).unwrap()[0].rows[0];
        assert_eq!(row.function, "kfree_skb_reason");
        assert_eq!(row.drop_reason.as_deref(), Some("NETFILTER_DROP"));
    }

    #[test]
    fn json_groups_by_packet_number() {
        let line = |n, ts| {
            format!(
                r#"{{"packet_id":"0xffff1","timestamp":{ts},"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false,"packet":{n}}}"#
            ) + "\n"
        };
        let groups = json(&(line(1, 10) + &line(2, 20) + &line(1, 15))).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].packet, groups[0].rows.len()), (Some(1), 2));
        assert_eq!(groups[1].rows[0].packet_id, "0xffff1");
    }

    #[test]
    fn parses_graph() {
        let mut out = format!(
            "{:<20} {:>3.3} {:>24.24} {:<64.64}\n===\n",
            "Timestamp", "CPU", "Module", "Function"
        );
        out += &format!(
            "{:<20} {:03} {:>24.24} {:<64.64}\n",
            1, 0, "vmlinux", "ip_rcv() {"
        );
        out += &format!(
            "{:<20} {:03} {:>24.24} {:<64.64}\n",
            2, 0, "vmlinux", "  ip_rcv_finish() {"
        );
        out += &format!("{:<20} {:03} {:>24.24} {:<64.64}\n", 3, 0, "vmlinux", "  }");
        let rows = &aggregate(&out, true).unwrap()[0].rows;
        assert_eq!(
            (rows[1].function.as_str(), rows[1].indent, rows[1].is_return),
            ("ip_rcv_finish", 2, false)
        );
        assert_eq!((rows[2].indent, rows[2].is_return), (2, true));
    }

    #[test]
    fn rejects_bad_rows() {
        let out = format!(
            "{:<20} {:>3.3} {:>24.24} {:>32.32}\n===\nhello\nworld\n",
            "Timestamp", "CPU", "Module", "Function"
        );
        assert!(aggregate(&out, false).is_err());
        assert!(aggregate("nothing\n", false).is_err());
    }

    #[test]
    fn parses_json() {
        let out = concat!(
            r#"{"packet_id":"0xffff1","timestamp":20,"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false}"#,
            "\n",
            r#"{"packet_id":"0xffff1","timestamp":10,"processor_id":0,"module":"vmlinux","function":"ip_output","is_return":false}"#,
            "\n"
        );
        let groups = json(out).unwrap();
        assert_eq!(groups[0].functions(), ["ip_output", "ip_rcv"]);
        assert!(json("{}\n").is_err());
    }

    #[test]
    fn parses_attach_line() {
        let err = "Attaching program (total 3, succeeded 1, failed 0, filtered: 0)\rAttaching program (total 3, succeeded 2, failed 1, filtered: 0)\nTrace ready!\n";
        assert_eq!(
            attach(err),
            Some(Attach {
                total: 3,
                succeeded: 2,
                failed: 1,
                filtered: 0
            })
        );
        assert_eq!(attach("Trace ready!"), None);
    }
}
