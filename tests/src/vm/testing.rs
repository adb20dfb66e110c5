//! Packets for the judges' unit tests.
use crate::parse::{Packet, Row};

/// One packet whose rows are entries of `names`, a timestamp apart.
pub fn group(names: &[&str]) -> Packet {
    let rows = names
        .iter()
        .enumerate()
        .map(|(i, n)| Row {
            tstamp: i as u64,
            cpu: 0,
            module: if n.starts_with("veth") {
                "veth"
            } else {
                "vmlinux"
            }
            .into(),
            function: n.to_string(),
            is_return: false,
            indent: 0,
            ..Row::default()
        })
        .collect();
    Packet {
        rows,
        ..Packet::default()
    }
}
