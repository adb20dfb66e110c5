//! Golden outputs. The files under `tests/golden/` were printed by a C
//! program using ipftrace2's printf formats on the same data, so they
//! check the layout against C's printf, not against this code.
use super::*;
use crate::retval::{value, Returns};

const FUNCTIONS: [(&str, &str); 7] = [
    ("vmlinux", "ip_rcv"),
    ("vmlinux", "__netif_receive_skb_one_core"),
    (
        "module_name_longer_than_24_chars",
        "a_function_name_that_is_longer_than_32_chars",
    ),
    ("vmlinux", "netif_receive_skb"),
    ("veth", "veth_xmit"),
    ("vmlinux", "kfree_skbmem"),
    (
        "vmlinux",
        "a_function_name_that_is_longer_than_32_chars_and_even_longer_than_64",
    ),
];

fn table(graph: bool) -> Table {
    Table::new(FUNCTIONS, graph, Vec::new())
}

/// A row of `func` at `tstamp` on `cpu`.
fn row(tstamp: u64, func: u32, cpu: u16, is_return: bool) -> Row<'static> {
    Row {
        tstamp,
        cpu,
        func,
        is_return,
        ..Row::default()
    }
}

/// The whole table of `groups`, each with no head.
fn render(table: &Table, groups: &[Vec<Row>]) -> String {
    let mut out = table.header().into_bytes();
    let mut scratch = String::new();
    for group in groups {
        let rows = group.iter().copied();
        table
            .group(&mut out, &Head::default(), rows, &mut scratch)
            .unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn row_numbers_match_printf() {
    // xorshift64: numbers of every length, reproducibly.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cases = vec![
        (0, 0),
        (1, 7),
        (u64::MAX, u32::MAX),
        (12345678901234567890, 999),
    ];
    cases.extend((0..1000).map(|_| (next() >> (next() % 64), next() as u32 >> (next() % 32))));
    for (tstamp, cpu) in cases {
        let mut line = [0u8; 64];
        let len = time_and_cpu(&mut line, tstamp, cpu);
        assert_eq!(&line[..len], format!("{tstamp:<20} {cpu:03}").as_bytes());
    }
}

#[test]
fn aggregate_function() {
    // Three packets as grouped: B with two rows at the same timestamp, C
    // with a 20-digit timestamp and a 4-digit CPU (wider than %03u, as in
    // C). Function 2 has a module and a name longer than their columns.
    let groups = [
        vec![
            row(25340022550000, 2, 12, false),
            row(25340022550100, 3, 12, false),
            row(25340022550100, 4, 7, false),
        ],
        vec![
            row(25340022557400, 1, 0, false),
            row(25340022557487, 0, 0, false),
            row(25340022557999, 5, 0, false),
        ],
        vec![
            row(99999999999999999, 0, 1, false),
            row(u64::MAX, 5, 1234, false),
        ],
    ];
    assert_eq!(
        render(&table(false), &groups),
        include_str!("../../tests/golden/aggregate.txt")
    );
}

#[test]
fn aggregate_function_graph() {
    // Packet D: a return without its entry first (depth stays 0), nested
    // calls, a name too long for the 64-column field, and an entry left
    // open at the end. Packet E: depth starts again at 0, and a surplus
    // return floors at 0.
    let d = [
        (1, 5, true),
        (2, 1, false),
        (3, 0, false),
        (4, 6, false),
        (5, 6, true),
        (6, 2, false),
        (7, 2, true),
        (8, 0, true),
        (9, 1, true),
        (10, 3, false),
    ];
    let e = [(3, 4, false), (4, 4, true), (5, 0, true)];
    let group = |rows: &[(u64, u32, bool)], cpu| {
        rows.iter()
            .map(|&(t, f, ret)| row(t, f, cpu, ret))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        render(&table(true), &[group(&d, 3), group(&e, 1)]),
        include_str!("../../tests/golden/aggregate_graph.txt")
    );
}

#[test]
fn graph_returns_show_their_values() {
    let returning = |t, func, returns, raw| Row {
        retval: value(returns, raw),
        ..row(t, func, 0, true)
    };
    let table = Table::new(
        [("vmlinux", "ip_rcv"), ("vmlinux", "skb_clone")],
        true,
        Vec::new(),
    );
    let group = vec![
        row(1, 0, 0, false),
        row(2, 1, 0, false),
        returning(3, 1, Returns::Pointer, -12i64 as u64),
        row(4, 1, 0, false),
        returning(5, 1, Returns::Pointer, 0xffff_8880_03a1_c000),
        returning(6, 0, Returns::Signed(4), 0xdead_beef_ffff_ffea),
    ];
    let rows: Vec<String> = [
        (1, "ip_rcv() {"),
        (2, "  skb_clone() {"),
        (3, "  } = -12 ENOMEM"),
        (4, "  skb_clone() {"),
        (5, "  } = 0xffff888003a1c000"),
        (6, "} = -22 EINVAL"),
    ]
    .iter()
    .map(|(t, call)| format!("{t:<20} 000 {:>24} {call:<64}\n", "vmlinux"))
    .collect();
    let header = format!(
        "\n{:<20} {:>3} {:>24} {:<64}\n",
        "Timestamp", "CPU", "Module", "Function"
    );
    assert_eq!(
        render(&table, &[group]),
        format!("{header}===\n{}", rows.concat())
    );
}

#[test]
fn deep_graph_is_all_indent() {
    // 40 nested entries: from depth 32 on, the 64 columns are all indent.
    let group: Vec<Row> = (0..40).map(|t| row(t, 0, 0, false)).collect();
    let text = render(&table(true), &[group]);
    let last = text.lines().last().unwrap();
    assert_eq!(last, format!("39{:18} 000 {:>24} {:64}", "", "vmlinux", ""));
}

#[test]
fn empty() {
    assert_eq!(
        render(&table(false), &[]),
        "\nTimestamp            CPU                   Module                         Function\n"
    );
}

#[test]
fn an_unknown_function_does_not_panic() {
    let text = render(&table(false), &[vec![row(1, 99, 0, false)]]);
    assert_eq!(
        text.lines().last().unwrap(),
        format!("1                    000 {UNKNOWN:>24} {UNKNOWN:>32}")
    );
    let text = render(&table(true), &[vec![row(1, 99, 0, false)]]);
    assert!(text.ends_with(&format!("{UNKNOWN:>24} {:<64}\n", "(unknown)() {")));
}

#[test]
fn columns_count_chars() {
    // C would cut these mid-character and pad by bytes; here cuts fall
    // between chars and padding counts chars, so columns stay aligned.
    // Row 1: 26 chars (29 bytes) for 24 columns, 35 chars (38 bytes) for
    // 32. Row 2: 6 chars (7 bytes), padded with 18 spaces.
    let table = Table::new(
        [
            (
                "mödule_ñame_ümlauts_123456",
                "fünction_ñame_with_ümlauts_and_more",
            ),
            ("ümlaut", "ümlaut"),
        ],
        false,
        Vec::new(),
    );
    let text = render(&table, &[vec![row(1, 0, 0, false), row(2, 1, 0, false)]]);
    let rows: Vec<&str> = text.lines().skip(3).collect();
    assert_eq!(
        rows,
        [
            "1                    000 mödule_ñame_ümlauts_1234 fünction_ñame_with_ümlauts_and_m",
            "2                    000                   ümlaut                           ümlaut",
        ]
    );
}

#[test]
fn drop_reasons_callers_stacks_fates_summaries_and_fields() {
    let stack = [
        "kfree_skb_reason+0x9".to_string(),
        "nf_hook_slow+0x8f".to_string(),
    ];
    let skb = Skb {
        len: 84,
        ..Skb::default()
    };
    let table = Table::new(FUNCTIONS, false, vec![Field::Len, Field::GsoSize]);
    let dropped = Row {
        drop_reason: Some(crate::Reason::Name("NETFILTER_DROP")),
        caller: Some("nf_hook_slow+0x8f"),
        stack: &stack,
        skb: Some(skb),
        ..row(2, 5, 1, false)
    };
    let head = Head {
        summary: Some("ICMP 127.0.0.1 -> 127.0.0.1 type 8 code 0 len 84 dev lo"),
        parent: None,
        fate: Some("dropped at nf_hook_slow+0x8f (NETFILTER_DROP)"),
    };
    let mut out = Vec::new();
    let rows = [row(1, 0, 1, false), dropped];
    table
        .group(&mut out, &head, rows.into_iter(), &mut String::new())
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap().lines().collect::<Vec<_>>(),
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
}

#[test]
fn clones_name_their_parent() {
    let line = |head: Head| {
        let mut out = Vec::new();
        let table = table(false);
        table
            .group(&mut out, &head, std::iter::empty(), &mut String::new())
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    let first_seen = Some(Parent::FirstSeen(25340022557400));
    assert_eq!(
        line(Head {
            summary: Some("UDP x"),
            parent: first_seen,
            fate: None
        }),
        "===\nUDP x (clone of the packet first seen at 25340022557400)\n"
    );
    assert_eq!(
        line(Head {
            parent: Some(Parent::NotTraced),
            ..Head::default()
        }),
        "===\n(clone of a packet not traced)\n"
    );
}

#[test]
fn depth_nested() {
    // a() { b() { c() { } } d() { } }
    let mut depth = Depth::default();
    let depths: Vec<usize> = [false, false, false, true, true, false, true, true]
        .into_iter()
        .map(|r| depth.of(r))
        .collect();
    assert_eq!(depths, [0, 1, 2, 2, 1, 1, 1, 0]);
}

#[test]
fn depth_floors_at_zero() {
    // Tracing started inside two calls: their returns print at 0.
    let mut depth = Depth::default();
    let depths: Vec<usize> = [true, true, false, true]
        .into_iter()
        .map(|r| depth.of(r))
        .collect();
    assert_eq!(depths, [0, 0, 0, 0]);
}
