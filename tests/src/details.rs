//! What ipft adds to ipftrace2's output: the summary line under each `===`,
//! drop reasons, `--field` values, and the json keys `packet`, `summary`,
//! `drop_reason` and the fields. The byte-exact layout is [`crate::parse`]'s.
use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use crate::parse::parse_json;

/// The line under each `===` of an aggregate table, `None` when the next line
/// is already a row (a packet without summary).
pub fn summaries(stdout: &str) -> Vec<Option<String>> {
    let row = Regex::new(r"^[0-9]+ +[0-9]{3,} ").unwrap();
    let mut lines = stdout.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        if line == "===" {
            let next = lines.next().unwrap_or_default();
            found.push((!row.is_match(next)).then(|| next.to_string()));
        }
    }
    found
}

/// The row lines of an aggregate table, as printed (with their notes and
/// `--field` values).
pub fn row_lines(stdout: &str) -> Vec<&str> {
    let row = Regex::new(r"^[0-9]+ +[0-9]{3,} ").unwrap();
    stdout.lines().filter(|l| row.is_match(l)).collect()
}

/// Every `-o json` line as a JSON value, after [`parse_json`] checked the
/// line's shape.
pub fn json_values(stdout: &str) -> Vec<Value> {
    parse_json(stdout);
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A string key of a json line ("" when absent).
pub fn text<'a>(line: &'a Value, key: &str) -> &'a str {
    line[key].as_str().unwrap_or_default()
}

/// json lines grouped by their `packet` number (each line must have one),
/// each group in timestamp order, groups in packet-number order.
pub fn by_packet(lines: &[Value]) -> Vec<Vec<Value>> {
    let mut packets: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in lines {
        let packet = line["packet"].as_u64();
        let packet = packet.unwrap_or_else(|| panic!("json line without `packet`: {line}"));
        packets.entry(packet).or_default().push(line.clone());
    }
    let mut packets: Vec<Vec<Value>> = packets.into_values().collect();
    for lines in &mut packets {
        lines.sort_by_key(|l| l["timestamp"].as_u64());
    }
    packets
}

/// The `function` of each line.
pub fn functions(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| text(l, "function")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_a_table() {
        let table = "\nheader\n===\nUDP 1 -> 2 len 3\n1  001 x\n===\n2  001 y\n";
        assert_eq!(
            summaries(table),
            [Some("UDP 1 -> 2 len 3".to_string()), None]
        );
        assert_eq!(row_lines(table), ["1  001 x", "2  001 y"]);
    }

    #[test]
    fn json_grouped_by_packet_number() {
        let line = |id: &str, ts: u64, packet: u32| {
            format!(
                r#"{{"packet_id":"{id}","timestamp":{ts},"processor_id":0,"module":"vmlinux","function":"f{ts}","is_return":false,"packet":{packet}}}"#
            )
        };
        let stdout = [line("0x1", 5, 2), line("0x1", 3, 1), line("0x1", 4, 2)].join("\n") + "\n";
        let packets = by_packet(&json_values(&stdout));
        let names: Vec<Vec<&str>> = packets.iter().map(|p| functions(p)).collect();
        assert_eq!(names, [vec!["f3"], vec!["f4", "f5"]]);
    }
}
