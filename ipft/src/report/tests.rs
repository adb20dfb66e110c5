//! Golden outputs through ipft's side of the report: records grouped as
//! the trace stage groups them, with targets, drop reasons and details,
//! converted to ipft-output's inputs. The files under
//! `ipft-output/tests/golden/` were printed by a C program using
//! ipftrace2's printf formats on the same data, so they check the layout
//! against C's printf, not against this code.
use std::{
    collections::HashMap,
    io::{self, Write},
};

use ipft_common::Event;

use super::{
    json::{self, JsonSeen},
    list,
    table::{aggregate, chunks, FIRST_CHUNK_ROWS},
    Extras,
};
use crate::{
    cli::Field,
    discover::{Returns, Target, TargetKind},
    trace::group::{Details, Groups, Located, Packets, Record},
};

fn target(name: &str, module: &str, addr: u64, skb_pos: u8) -> Target {
    Target {
        name: name.into(),
        module: module.into(),
        addr,
        address: Default::default(),
        skb_pos,
        reason_pos: None,
        nargs: skb_pos + 1,
        kind: TargetKind::Function,
        btf_id: 0,
        returns: Returns::Nothing,
    }
}

fn targets() -> Vec<Target> {
    let mut tracepoint = target("netif_receive_skb", "vmlinux", 0, 0);
    tracepoint.kind = TargetKind::Tracepoint;
    vec![
        target("ip_rcv", "vmlinux", 0xffffffff81c3a2b0, 0),
        target(
            "__netif_receive_skb_one_core",
            "vmlinux",
            0xffffffff81b0e130,
            0,
        ),
        target(
            "a_function_name_that_is_longer_than_32_chars",
            "module_name_longer_than_24_chars",
            0xffffffffc0a01234,
            3,
        ),
        tracepoint,
        target("veth_xmit", "veth", 0xffffffffc0b1c020, 0),
        target("kfree_skbmem", "vmlinux", 0xffffffff81a00010, 0),
        target(
            "a_function_name_that_is_longer_than_32_chars_and_even_longer_than_64",
            "vmlinux",
            0xffffffff81000040,
            11,
        ),
    ]
}

use crate::trace::group::tests::record_at as rec;

/// Groups `records` (given in arrival order) as the aggregate output does.
fn groups(records: &[Record]) -> Groups {
    let mut packets = Packets::new();
    for r in records {
        packets.push(*r);
    }
    packets.into_groups().0
}

fn render(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

const A: u64 = 0xffff8dee8aea9700;
const B: u64 = 0xffff8dee8aea1000;
const C: u64 = 0xffff8dee00000100;

#[test]
fn aggregate_function() {
    // Three packets arriving interleaved and out of order. B starts first,
    // then A, then C; B has two events with the same timestamp (arrival
    // order kept); C has a 20-digit timestamp and a 4-digit CPU (wider
    // than %03u, as in C). Target 2 has a module and a name longer than
    // their columns.
    let records = [
        rec(A, 25340022557487, 0, 0, false),
        rec(B, 25340022550100, 3, 12, false),
        rec(C, u64::MAX, 5, 1234, false),
        rec(A, 25340022557999, 5, 0, false),
        rec(B, 25340022550000, 2, 12, false),
        rec(A, 25340022557400, 1, 0, false),
        rec(B, 25340022550100, 4, 7, false),
        rec(C, 99999999999999999, 0, 1, false),
    ];
    let text = render(|out| {
        aggregate(
            out,
            &groups(&records),
            &targets(),
            false,
            &Extras::default(),
        )
    });
    assert_eq!(
        text,
        include_str!("../../../ipft-output/tests/golden/aggregate.txt")
    );
}

#[test]
fn aggregate_function_graph() {
    // Packet D: a return without its entry first (depth stays 0), nested
    // calls, a name too long for the 64-column field, and an entry left
    // open at the end. Packet E: depth starts again at 0, and a surplus
    // return floors at 0.
    const D: u64 = 0xffff8dee8aea2000;
    const E: u64 = 0xffff8dee8aea3000;
    let records = [
        rec(E, 3, 4, 1, false),
        rec(D, 6, 2, 3, false),
        rec(D, 1, 5, 3, true),
        rec(D, 2, 1, 3, false),
        rec(E, 5, 0, 1, true),
        rec(D, 3, 0, 3, false),
        rec(D, 4, 6, 3, false),
        rec(D, 5, 6, 3, true),
        rec(E, 4, 4, 1, true),
        rec(D, 7, 2, 3, true),
        rec(D, 8, 0, 3, true),
        rec(D, 9, 1, 3, true),
        rec(D, 10, 3, 3, false),
    ];
    let text =
        render(|out| aggregate(out, &groups(&records), &targets(), true, &Extras::default()));
    assert_eq!(
        text,
        include_str!("../../../ipft-output/tests/golden/aggregate_graph.txt")
    );
}

/// Targets of each kind of return type, for the return value tests.
fn returning_targets() -> Vec<Target> {
    let returning = |name: &str, returns| Target {
        returns,
        ..target(name, "vmlinux", 0, 0)
    };
    vec![
        returning("ip_rcv", Returns::Signed(4)),
        returning("skb_clone", Returns::Pointer),
        returning("skb_try_coalesce", Returns::Unsigned(1)),
        returning("kfree_skb", Returns::Nothing),
        returning("udp_queue_rcv_skb", Returns::Signed(4)),
    ]
}

/// A return of target `func` with `retval` in the register.
fn returned(tstamp: u64, func: u32, retval: u64) -> Record {
    Record {
        retval,
        ..rec(A, tstamp, func, 0, true)
    }
}

#[test]
fn aggregate_graph_shows_return_values() {
    // The int's -22 arrives with garbage above its 32 bits.
    let records = vec![
        rec(A, 1, 0, 0, false),
        rec(A, 2, 1, 0, false),
        returned(3, 1, -12i64 as u64),
        rec(A, 4, 1, 0, false),
        returned(5, 1, 0xffff_8880_03a1_c000),
        rec(A, 6, 2, 0, false),
        returned(7, 2, 0x7f01),
        rec(A, 8, 3, 0, false),
        returned(9, 3, 0x1234),
        rec(A, 10, 4, 0, false),
        returned(11, 4, 0),
        returned(12, 0, 0xdead_beef_ffff_ffea),
    ];
    let text = render(|out| {
        aggregate(
            out,
            &[records][..],
            &returning_targets(),
            true,
            &Extras::default(),
        )
    });
    let rows: Vec<String> = [
        (1, "ip_rcv() {"),
        (2, "  skb_clone() {"),
        (3, "  } = -12 ENOMEM"),
        (4, "  skb_clone() {"),
        (5, "  } = 0xffff888003a1c000"),
        (6, "  skb_try_coalesce() {"),
        (7, "  } = 1"),
        (8, "  kfree_skb() {"),
        (9, "  }"),
        (10, "  udp_queue_rcv_skb() {"),
        (11, "  } = 0"),
        (12, "} = -22 EINVAL"),
    ]
    .iter()
    .map(|(t, call)| format!("{t:<20} 000 {:>24} {call:<64}\n", "vmlinux"))
    .collect();
    let header = format!(
        "\n{:<20} {:>3} {:>24} {:<64}\n",
        "Timestamp", "CPU", "Module", "Function"
    );
    assert_eq!(text, format!("{header}===\n{}", rows.concat()));
}

#[test]
fn json_return_values_are_numbers_with_their_errno() {
    let targets = returning_targets();
    let text = render(|out| {
        for r in [
            returned(1, 0, 0xdead_beef_ffff_ffea),
            returned(2, 1, 0xffff_8880_03a1_c000),
            returned(3, 1, -12i64 as u64),
            returned(4, 3, 7),
            rec(A, 5, 0, 0, false),
        ] {
            json::event(
                out,
                &r,
                &targets,
                &Extras::default(),
                JsonSeen::default(),
                None,
            )?;
        }
        Ok(())
    });
    let tails: Vec<&str> = text
        .lines()
        .map(|l| &l[l.find(r#""packet":"#).unwrap()..])
        .collect();
    assert_eq!(
        tails,
        [
            r#""packet":2330629888,"retval":-22,"errno":"EINVAL"}"#,
            r#""packet":2330629888,"retval":"0xffff888003a1c000"}"#,
            r#""packet":2330629888,"retval":-12,"errno":"ENOMEM"}"#,
            r#""packet":2330629888}"#,
            r#""packet":2330629888}"#,
        ]
    );
}

#[test]
fn aggregate_of_many_chunks_keeps_group_order() {
    // 6,000 packets of 3 rows: the first chunk and a dozen more, formatted
    // on several threads, must come out as if formatted one by one.
    let groups: Vec<Vec<Record>> = (0..6000u64)
        .map(|p| {
            (0..3)
                .map(|i| rec(p + 1, p * 10 + i, (p % 3) as u32, 1, false))
                .collect()
        })
        .collect();
    assert!(chunks(groups.as_slice()).len() > 2);
    let whole = render(|out| {
        aggregate(
            out,
            groups.as_slice(),
            &targets(),
            false,
            &Extras::default(),
        )
    });
    let header =
        render(|out| aggregate::<[Vec<Record>]>(out, &[], &targets(), false, &Extras::default()));
    let mut one_by_one = header.clone();
    for group in &groups {
        let alone = render(|out| {
            aggregate(
                out,
                std::slice::from_ref(group),
                &targets(),
                false,
                &Extras::default(),
            )
        });
        one_by_one += &alone[header.len()..];
    }
    assert_eq!(whole, one_by_one);
}

#[test]
fn chunks_hold_whole_groups() {
    let groups: Vec<Vec<Record>> = (0..100u64)
        .map(|p| vec![rec(p + 1, p, 0, 0, false); 100])
        .collect();
    let chunks = chunks(groups.as_slice());
    // A small first chunk, so that output starts at once.
    assert_eq!(chunks[0].len(), FIRST_CHUNK_ROWS.div_ceil(100));
    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 100);
}

#[test]
fn aggregate_empty() {
    let text =
        render(|out| aggregate::<[Vec<Record>]>(out, &[], &targets(), false, &Extras::default()));
    assert_eq!(
        text,
        "\nTimestamp            CPU                   Module                         Function\n"
    );
}

#[test]
fn json_lines() {
    let targets = targets();
    let text = render(|out| {
        let none = Extras::default();
        json::event(
            out,
            &rec(A, 25340022557487, 0, 0, false),
            &targets,
            &none,
            JsonSeen::default(),
            None,
        )?;
        json::event(
            out,
            &rec(C, u64::MAX, 2, 1234, true),
            &targets,
            &none,
            JsonSeen::default(),
            None,
        )?;
        // An index past the target list must not panic.
        json::event(
            out,
            &rec(1, 0, 99, 0, false),
            &targets,
            &none,
            JsonSeen::default(),
            None,
        )
    });
    assert_eq!(
        text,
        concat!(
            r#"{"packet_id":"0xffff8dee8aea9700","timestamp":25340022557487,"processor_id":0,"module":"vmlinux","function":"ip_rcv","is_return":false,"packet":2330629888}"#,
            "\n",
            r#"{"packet_id":"0xffff8dee00000100","timestamp":18446744073709551615,"processor_id":1234,"module":"module_name_longer_than_24_chars","function":"a_function_name_that_is_longer_than_32_chars","is_return":true,"packet":256}"#,
            "\n",
            r#"{"packet_id":"0x1","timestamp":0,"processor_id":0,"module":"(unknown)","function":"(unknown)","is_return":false,"packet":1}"#,
            "\n",
        )
    );
}

#[test]
fn json_escapes_strings() {
    let targets = [target("a\"b\\c\nd\te\u{1}é", "m\"od", 0, 0)];
    let text = render(|out| {
        json::event(
            out,
            &rec(A, 1, 0, 2, false),
            &targets,
            &Extras::default(),
            JsonSeen::default(),
            None,
        )
    });
    assert_eq!(
        text,
        concat!(
            r#"{"packet_id":"0xffff8dee8aea9700","timestamp":1,"processor_id":2,"module":"m\"od","function":"a\"b\\c\nd\te\u0001é","is_return":false,"packet":2330629888}"#,
            "\n"
        )
    );
    // And it is valid JSON that reads back to the same strings.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["function"], targets[0].name);
    assert_eq!(v["module"], targets[0].module);
}

#[test]
fn drop_reasons_callers_stacks_fates_summaries_and_fields() {
    let mut snapshot = Event::zeroed();
    snapshot.len = 84;
    snapshot.gso_size = 0;
    let mut details = Details::default();
    details.summaries.insert(
        A as u32,
        "ICMP 127.0.0.1 -> 127.0.0.1 type 8 code 0 len 84 dev lo".into(),
    );
    details.snapshots.push(snapshot);
    let located = Located {
        caller: Some("nf_hook_slow+0x8f".into()),
        stack: vec!["kfree_skb_reason+0x9".into(), "nf_hook_slow+0x8f".into()],
    };
    details.located.insert(0, located.clone());
    let fates = HashMap::from([(
        A as u32,
        "dropped at nf_hook_slow+0x8f (NETFILTER_DROP)".to_string(),
    )]);
    let reasons = HashMap::from([(6, "NETFILTER_DROP".to_string())]);
    let fields = [Field::Len, Field::GsoSize];
    let extras = Extras {
        reasons: Some(&reasons),
        fields: &fields,
        details: Some(&details),
        fates: Some(&fates),
    };
    let mut dropped = rec(A, 2, 5, 1, false);
    dropped.drop_reason = 6;
    dropped.fields = 0;
    let plain = rec(A, 1, 0, 1, false);
    let text =
        render(|out| aggregate(out, &[vec![plain, dropped]][..], &targets(), false, &extras));
    assert_eq!(
        text.lines().skip(2).collect::<Vec<_>>(),
        [
            "===",
            "ICMP 127.0.0.1 -> 127.0.0.1 type 8 code 0 len 84 dev lo",
            "1                    001                  vmlinux                           ip_rcv",
            "2                    001                  vmlinux                     kfree_skbmem (drop: NETFILTER_DROP) (caller: nf_hook_slow+0x8f) ( len: 84 gso_size: 0 )",
            "    kfree_skb_reason+0x9",
            "    nf_hook_slow+0x8f",
            "fate: dropped at nf_hook_slow+0x8f (NETFILTER_DROP)",
        ]
    );
    let fate = serde_json::json!({"kind": "dropped", "reason": "NETFILTER_DROP"});
    let json = render(|out| {
        json::event(
            out,
            &dropped,
            &targets(),
            &extras,
            JsonSeen {
                summary: Some("ICMP x"),
                parent: Some(1),
                located: Some(&located),
                fate: Some(&fate),
            },
            Some(&snapshot),
        )
    });
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["drop_reason"], "NETFILTER_DROP");
    assert_eq!(v["summary"], "ICMP x");
    assert_eq!(v["len"], "84");
    assert_eq!(v["packet"], A as u32);
    assert_eq!(v["parent_packet"], 1);
    assert_eq!(v["caller"], "nf_hook_slow+0x8f");
    assert_eq!(
        v["stack"],
        serde_json::json!(["kfree_skb_reason+0x9", "nf_hook_slow+0x8f"])
    );
    assert_eq!(v["fate"], fate);
}

#[test]
fn list_table() {
    let text = render(|out| {
        writeln!(out, "{}", list::header())?;
        list::write(out, &targets(), false)
    });
    assert_eq!(
        text,
        include_str!("../../../ipft-output/tests/golden/list.txt")
    );
}
