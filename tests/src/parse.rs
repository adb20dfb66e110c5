//! ipft's two output formats, parsed strictly: a line that is not byte for
//! byte what the contract's printf would produce fails the test.
use std::collections::HashMap;

use regex::Regex;

/// One row of the aggregate table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub tstamp: u64,
    pub cpu: u32,
    pub module: String,
    /// The function column, trimmed: a name, maybe with a note such as
    /// `kfree_skb (drop: NO_SOCKET)`.
    pub function: String,
    /// The function or tracepoint name: the column's first word.
    pub name: String,
}

/// `printf("%-20s %3.3s %24.24s %32.32s\n", "Timestamp", "CPU", "Module", "Function")`
pub fn table_header() -> String {
    format!(
        "{:<20} {:>3.3} {:>24.24} {:>32.32}",
        "Timestamp", "CPU", "Module", "Function"
    )
}

/// `printf("%-20zu %03u %24.24s %32.32s", tstamp, cpu, module, function)`
fn format_row(row: &Row) -> String {
    format!(
        "{:<20} {:03} {:>24.24} {:>32.32}",
        row.tstamp, row.cpu, row.module, row.function
    )
}

/// A row is the contract's printf byte for byte; anything after the
/// function column (`--field` values) is allowed and ignored.
fn parse_row(line: &str) -> Option<Row> {
    let columns = Regex::new(r"^([0-9]+) +([0-9]{3,}) (.{24}) (.{32})").unwrap();
    let c = columns.captures(line)?;
    let function = c[4].trim().to_string();
    let row = Row {
        tstamp: c[1].parse().ok()?,
        cpu: c[2].parse().ok()?,
        module: c[3].trim().to_string(),
        name: function.split_whitespace().next()?.to_string(),
        function,
    };
    (format_row(&row) == c[0]).then_some(row)
}

/// The aggregate table printed on SIGINT/SIGTERM: a blank line, the header,
/// then per packet `===` and its rows. Returns the packets' rows in order.
///
/// ipft adds one line after `===` that says what the packet is (README, "What
/// each packet shows"), e.g. `UDP 127.0.0.1:55399 -> 127.0.0.1:9 len 47 dev
/// lo`: one non-row line right after `===` is accepted as that summary.
pub fn parse_table(stdout: &str) -> Vec<Vec<Row>> {
    let fail = |why: String| -> ! { panic!("{why}; the whole stdout:\n{stdout}") };
    let Some(rest) = stdout.strip_prefix('\n') else {
        fail("the aggregate table must start with a blank line".into());
    };
    let mut lines = rest.lines();
    let header = lines.next().unwrap_or_default();
    if header != table_header() {
        fail(format!("header is {header:?}, want {:?}", table_header()));
    }
    let mut packets: Vec<Vec<Row>> = Vec::new();
    let mut after_separator = false;
    for line in lines {
        let summary_allowed = std::mem::take(&mut after_separator);
        if line == "===" {
            packets.push(Vec::new());
            after_separator = true;
        } else if let Some(row) = parse_row(line) {
            match packets.last_mut() {
                Some(packet) => packet.push(row),
                None => fail(format!("row before the first `===`: {line:?}")),
            }
        } else if !(line.is_empty() || summary_allowed) {
            fail(format!("not a table row: {line:?}"));
        }
    }
    packets
}

/// One line of `-o json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub packet_id: String,
    pub timestamp: u64,
    pub processor_id: u32,
    pub module: String,
    pub function: String,
    pub is_return: bool,
}

/// Every line of `-o json` output: valid JSON starting with the contract's
/// keys in the contract's order; keys after them (extension fields, ipft's
/// `packet`, `summary`, `drop_reason`) are allowed. A last line without `\n`
/// (cut off) is an error.
pub fn parse_json(stdout: &str) -> Vec<Event> {
    let shape = Regex::new(concat!(
        r#"^\{"packet_id":"0x[0-9a-f]+","timestamp":[0-9]+,"processor_id":[0-9]+,"#,
        r#""module":"[^"]+","function":"[^"]+","is_return":(true|false)[,}]"#
    ))
    .unwrap();
    assert!(
        stdout.is_empty() || stdout.ends_with('\n'),
        "JSON output does not end with a newline:\n{stdout}"
    );
    stdout
        .lines()
        .map(|line| {
            assert!(
                shape.is_match(line),
                "JSON line has the wrong shape: {line}"
            );
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            Event {
                packet_id: value["packet_id"].as_str().unwrap().to_string(),
                timestamp: value["timestamp"].as_u64().unwrap(),
                processor_id: value["processor_id"].as_u64().unwrap() as u32,
                module: value["module"].as_str().unwrap().to_string(),
                function: value["function"].as_str().unwrap().to_string(),
                is_return: value["is_return"].as_bool().unwrap(),
            }
        })
        .collect()
}

/// JSON events as the aggregate view would show them: grouped by packet id,
/// each group sorted by timestamp, groups ordered by their first timestamp.
pub fn group_events(events: &[Event]) -> Vec<Vec<Event>> {
    let mut groups: HashMap<&str, Vec<Event>> = HashMap::new();
    for event in events {
        groups
            .entry(&event.packet_id)
            .or_default()
            .push(event.clone());
    }
    let mut groups: Vec<Vec<Event>> = groups.into_values().collect();
    for group in &mut groups {
        group.sort_by_key(|e| e.timestamp);
    }
    groups.sort_by_key(|g| g[0].timestamp);
    groups
}

/// Whether `want` appears in `names` in this order (not necessarily adjacent).
pub fn in_order(names: &[&str], want: &[&str]) -> bool {
    let mut rest = names.iter();
    want.iter().all(|w| rest.any(|n| n == w))
}

pub fn row_names(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.name.as_str()).collect()
}

pub fn event_names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.function.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trip() {
        let stdout = format!(
            "\n{}\n===\n{:<20} 001 {:>24} {:>32}\n",
            table_header(),
            25340022557487u64,
            "vmlinux",
            "netif_rx"
        );
        let packets = parse_table(&stdout);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0][0].tstamp, 25340022557487);
        assert_eq!(packets[0][0].cpu, 1);
        assert_eq!(packets[0][0].function, "netif_rx");
    }

    #[test]
    fn table_accepts_a_summary_and_notes() {
        let stdout = format!(
            "\n{}\n===\nUDP 127.0.0.1:1 -> 127.0.0.1:9 len 47 dev lo\n{:<20} 000 {:>24} {:>32} ( len: 84 )\n",
            table_header(),
            7u64,
            "vmlinux",
            "kfree_skb (drop: NO_SOCKET)"
        );
        let rows = &parse_table(&stdout)[0];
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "kfree_skb");
        assert_eq!(rows[0].function, "kfree_skb (drop: NO_SOCKET)");
    }

    #[test]
    #[should_panic(expected = "not a table row")]
    fn table_rejects_a_second_non_row() {
        parse_table(&format!("\n{}\n===\nsummary\nsummary\n", table_header()));
    }

    #[test]
    #[should_panic(expected = "not a table row")]
    fn table_rejects_a_misaligned_row() {
        let row = format!("{:<20} {:03} {:>24} {:>32}", 1, 1, "vmlinux", "netif_rx");
        let shifted = format!("{} {}", &row[..20], &row[20..]);
        parse_table(&format!("\n{}\n===\n{row}\n{shifted}\n", table_header()));
    }

    #[test]
    fn json_line() {
        let line = r#"{"packet_id":"0xffff8dee8aea9700","timestamp":25340022557487,"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false}"#;
        let events = parse_json(&format!("{line}\n"));
        assert_eq!(events[0].function, "ip_rcv");
        assert_eq!(events[0].packet_id, "0xffff8dee8aea9700");
    }

    #[test]
    #[should_panic(expected = "wrong shape")]
    fn json_rejects_reordered_keys() {
        parse_json("{\"timestamp\":1,\"packet_id\":\"0x1\",\"processor_id\":0,\"module\":\"vmlinux\",\"function\":\"f\",\"is_return\":false}\n");
    }

    #[test]
    fn order() {
        assert!(in_order(&["a", "x", "b", "c"], &["a", "b", "c"]));
        assert!(!in_order(&["b", "a"], &["a", "b"]));
    }
}
