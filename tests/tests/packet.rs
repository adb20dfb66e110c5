//! Following the packet with the tracepoint backend, which every BTF kernel
//! has: why it was dropped, what it is (the summary line), skb fields on
//! each row, `--track` across a namespace, and one group per skb life even
//! when the kernel reuses the memory (backends.rs follows lives that only
//! a function backend sees end).
//! Each test owns a mark (see `marks`); timeouts are hang protection only.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use regex::Regex;
use serde_json::Value;

use ipft_tests::{
    checks,
    details::{self, by_packet, functions, json_values, summaries, text},
    flows::{self, ClosedPort},
    marks,
    netns::{IptablesRule, Veth},
    packets::{self, PING_PATH, UDP_PATH},
    parse::{in_order, parse_table, row_names},
    scripting::{poll_until, POLL_TIMEOUT},
    Ipft, Output,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The free that ends an skb's life, as the tracepoint backend sees it.
fn is_free(name: &str) -> bool {
    matches!(name, "kfree_skb" | "consume_skb")
}

/// `UDP 127.0.0.1:S -> 127.0.0.1:D len N dev lo` for this flow (`[…]` for
/// IPv6); a regex.
fn udp_summary(from: SocketAddr, to: SocketAddr, dev: bool) -> Regex {
    let dev = if dev { " dev lo" } else { "" };
    let flow = format!("UDP {from} -> {to}");
    Regex::new(&format!(r"^{} len \d+{dev}$", regex::escape(&flow))).unwrap()
}

/// The last row of the one packet in `out`, as printed: the note (`(drop:
/// …)`) follows the function column, which [`parse_table`] reads.
fn last_row_line(out: &Output) -> &str {
    assert_eq!(parse_table(&out.stdout).len(), 1, "one packet\n{out}");
    let rows = details::row_lines(&out.stdout);
    rows.last().unwrap()
}

/// A datagram to a closed port ends in `kfree_skb (drop: NO_SOCKET)`, the
/// only row with a drop note, under a summary naming its ports.
fn closed_port_drop_is_no_socket() {
    let flow = ClosedPort::new(marks::NO_SOCKET);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::NO_SOCKET)]);
    flow.send_and_wait_dropped();
    let out = ipft.stop(libc::SIGINT);

    let last = last_row_line(&out);
    assert!(
        last.contains(" kfree_skb (drop: NO_SOCKET) (caller: "),
        "{out}"
    );
    let notes = details::row_lines(&out.stdout);
    let notes = notes.iter().filter(|r| r.contains("drop:"));
    assert_eq!(notes.count(), 1, "only the drop has a reason\n{out}");
    let packets = parse_table(&out.stdout);
    checks::packets(&packets, UDP_PATH, 0, u64::MAX, &out);
    let summary = summaries(&out.stdout)[0].clone().unwrap_or_default();
    let want = udp_summary(flow.local(), flow.peer(), true);
    assert!(
        want.is_match(&summary),
        "summary {summary:?}, want {want}\n{out}"
    );
    checks::clean_exit(&out, checks::row_count(&packets));
}

fn closed_port_drop_reason_in_json() {
    let flow = ClosedPort::new(marks::NO_SOCKET_JSON);
    let ipft = Ipft::start(&[
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::NO_SOCKET_JSON),
        "-o",
        "json",
    ]);
    flow.send_and_wait_dropped();
    let out = ipft.stop(libc::SIGINT);

    let lines = json_values(&out.stdout);
    let dropped: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("drop_reason").is_some())
        .collect();
    assert_eq!(dropped.len(), 1, "one line has a drop reason\n{out}");
    assert_eq!(text(dropped[0], "function"), "kfree_skb", "{out}");
    assert_eq!(text(dropped[0], "drop_reason"), "NO_SOCKET", "{out}");
    let last = lines.iter().max_by_key(|l| l["timestamp"].as_u64());
    assert_eq!(last, Some(dropped[0]), "the drop is the last event\n{out}");
}

/// Dropped by iptables on the way out: sendto fails with EPERM, and the
/// only event is the drop (the skb never reached a device).
fn iptables_output_drop_is_netfilter_drop() {
    let mark = hex(marks::NETFILTER_OUTPUT);
    let _rule = IptablesRule::insert(
        "filter",
        "OUTPUT",
        &["-m", "mark", "--mark", &mark, "-j", "DROP"],
    );
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark]);
    let sink = packets::sink();
    let sent =
        packets::sender(Some(marks::NETFILTER_OUTPUT)).send_to(b"ipft", sink.local_addr().unwrap());
    let out = ipft.stop(libc::SIGINT);

    let refused = sent.as_ref().err().and_then(|e| e.raw_os_error());
    assert_eq!(
        refused,
        Some(libc::EPERM),
        "the DROP rule refuses the datagram: {sent:?}"
    );
    let last = last_row_line(&out);
    assert!(
        last.contains(" kfree_skb (drop: NETFILTER_DROP) (caller: "),
        "{out}"
    );
}

/// Dropped by iptables on the way in, after the loopback crossing.
fn iptables_input_drop_is_netfilter_drop() {
    let mark = hex(marks::NETFILTER_INPUT);
    let _rule = IptablesRule::insert(
        "filter",
        "INPUT",
        &["-m", "mark", "--mark", &mark, "-j", "DROP"],
    );
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "json"]);
    let sink = packets::sink();
    packets::send(&packets::sender(Some(marks::NETFILTER_INPUT)), &sink);
    // The receive half may run later, in ksoftirqd: wait for the drop.
    let dropped = poll_until(POLL_TIMEOUT, || ipft.stdout().contains("drop_reason"));
    let out = ipft.stop(libc::SIGINT);

    assert!(dropped, "no drop reported\n{out}");
    let lines = json_values(&out.stdout);
    let packets = by_packet(&lines);
    assert_eq!(packets.len(), 1, "{out}");
    let names = functions(&packets[0]);
    assert!(in_order(&names, UDP_PATH), "{names:?}\n{out}");
    let last = packets[0].last().unwrap();
    assert_eq!(text(last, "function"), "kfree_skb", "{out}");
    assert_eq!(text(last, "drop_reason"), "NETFILTER_DROP", "{out}");
}

/// Each packet's first line says what it is; json has the same summary once
/// per packet. Table and json tracers run side by side on the same packets.
fn summary_lines_name_each_flow() {
    let mark = hex(marks::SUMMARY);
    let table = Ipft::start(&["-b", "tracepoint", "-m", &mark]);
    let json = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "json"]);
    let sender = packets::sender(Some(marks::SUMMARY));
    let sinks = packets::send_datagrams(&sender, 1);
    flows::ping(marks::SUMMARY, LOCALHOST, 1);
    let table_out = table.stop(libc::SIGINT);
    let json_out = json.stop(libc::SIGINT);

    let packets = parse_table(&table_out.stdout);
    assert_eq!(
        packets.len(),
        2,
        "a datagram and an echo request\n{table_out}"
    );
    let found: Vec<String> = summaries(&table_out.stdout).into_iter().flatten().collect();
    let udp = udp_summary(
        sender.local_addr().unwrap(),
        sinks[0].local_addr().unwrap(),
        true,
    );
    let icmp =
        Regex::new(r"^ICMP 127\.0\.0\.1 -> 127\.0\.0\.1 type 8 code 0 len \d+ dev lo$").unwrap();
    let matches = |re: &Regex| found.iter().filter(|s| re.is_match(s)).count();
    assert_eq!(
        (matches(&udp), matches(&icmp)),
        (1, 1),
        "{found:?}\n{table_out}"
    );

    let lines = json_values(&json_out.stdout);
    let mut from_json = Vec::new();
    for packet in by_packet(&lines) {
        let said: Vec<&str> = packet
            .iter()
            .filter_map(|l| l["summary"].as_str())
            .collect();
        assert_eq!(said.len(), 1, "one summary per packet\n{json_out}");
        from_json.push(said[0].to_string());
    }
    let (mut from_json, mut from_table) = (from_json, found);
    from_json.sort();
    from_table.sort();
    assert_eq!(from_json, from_table, "{json_out}\n{table_out}");
}

fn summary_of_an_ipv6_datagram() {
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::SUMMARY_V6)]);
    let (sender, sink) = (flows::sender_v6(marks::SUMMARY_V6), flows::sink_v6());
    flows::send_and_read(&sender, &sink);
    let out = ipft.stop(libc::SIGINT);

    let packets = parse_table(&out.stdout);
    assert_eq!(packets.len(), 1, "{out}");
    checks::packets(&packets, UDP_PATH, 0, u64::MAX, &out);
    let summary = summaries(&out.stdout)[0].clone().unwrap_or_default();
    let want = udp_summary(
        sender.local_addr().unwrap(),
        sink.local_addr().unwrap(),
        true,
    );
    assert!(
        want.is_match(&summary),
        "summary {summary:?}, want {want}\n{out}"
    );
}

/// `--field len --field dev`: every row ends with the values, every json
/// line ends with them as string keys, in the order given.
fn fields_follow_every_row() {
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::FIELDS),
        "--field",
        "len",
        "--field",
        "dev",
    ];
    let table = Ipft::start(&args);
    let json = Ipft::start(&[&args[..], &["-o", "json"]].concat());
    let sent = 2;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::FIELDS)), sent);
    let table_out = table.stop(libc::SIGINT);
    let json_out = json.stop(libc::SIGINT);

    let packets = parse_table(&table_out.stdout);
    assert_eq!(packets.len(), sent, "{table_out}");
    let rows = details::row_lines(&table_out.stdout);
    assert_eq!(rows.len(), checks::row_count(&packets), "{table_out}");
    let row_end = Regex::new(r" \( len: [1-9][0-9]* dev: lo \)$").unwrap();
    for row in rows {
        assert!(row_end.is_match(row), "row {row:?}\n{table_out}");
    }
    let line_end = Regex::new(r#","len":"[1-9][0-9]*","dev":"lo"\}$"#).unwrap();
    let lines = json_out.stdout.lines();
    let rows = checks::row_count(&packets);
    assert_eq!(
        lines.clone().count(),
        rows,
        "as many as the table\n{json_out}"
    );
    for line in lines {
        assert!(line_end.is_match(line), "line {line}\n{json_out}");
    }
    details::json_values(&json_out.stdout);
}

/// A marked ping into a namespace, traced with and without `--track` at
/// once. The veth crossing scrubs the mark: without `--track` the rows stop
/// there; with it the same packet goes on through the receive path in the
/// namespace until icmp_rcv consumes it.
fn track_follows_the_packet_into_a_namespace() {
    let veth = Veth::new("trk", 1);
    veth.resolve_neighbour();
    let mark = hex(marks::TRACK);
    let plain = Ipft::start(&["-b", "tracepoint", "-m", &mark]);
    let tracked = Ipft::start(&["-b", "tracepoint", "-m", &mark, "--track"]);
    flows::ping(marks::TRACK, IpAddr::V4(veth.peer_addr), 1);
    let plain_out = plain.stop(libc::SIGINT);
    let tracked_out = tracked.stop(libc::SIGINT);

    let sent = ["net_dev_queue", "net_dev_start_xmit"];
    let received = ["netif_rx", "netif_receive_skb", "consume_skb"];
    let plain_packets = parse_table(&plain_out.stdout);
    assert_eq!(plain_packets.len(), 1, "{plain_out}");
    let names = row_names(&plain_packets[0]);
    assert_eq!(
        names, sent,
        "untracked rows stop at the crossing\n{plain_out}"
    );

    let packets = parse_table(&tracked_out.stdout);
    assert_eq!(packets.len(), 1, "{tracked_out}");
    let names = row_names(&packets[0]);
    let path = [&sent[..], &received].concat();
    assert!(
        in_order(&names, &path),
        "{names:?} lacks {path:?}\n{tracked_out}"
    );
    assert_eq!(names.last(), Some(&"consume_skb"), "{tracked_out}");
    let dev = format!(" dev {}", veth.host_dev);
    let summary = summaries(&tracked_out.stdout)[0]
        .clone()
        .unwrap_or_default();
    let flow = format!(
        "ICMP {} -> {} type 8 code 0",
        veth.host_addr, veth.peer_addr
    );
    assert!(
        summary.starts_with(&flow) && summary.ends_with(&dev),
        "{summary:?}\n{tracked_out}"
    );
    checks::clean_exit(&tracked_out, checks::row_count(&packets));
}

/// Checks that every packet ends with its one free, and that `packet`
/// numbers are distinct while each packet keeps one `packet_id`.
fn assert_one_life_each(packets: &[Vec<Value>], out: &Output) {
    let mut numbers = HashSet::new();
    for lines in packets {
        let names = functions(lines);
        let frees = names.iter().filter(|n| is_free(n)).count();
        let why = "exactly one free, at the end";
        assert!(
            frees == 1 && is_free(names.last().unwrap()),
            "{why}: {names:?}\n{out}"
        );
        let ids: HashSet<&str> = lines.iter().map(|l| text(l, "packet_id")).collect();
        assert_eq!(ids.len(), 1, "one skb per packet: {ids:?}\n{out}");
        numbers.insert(lines[0]["packet"].as_u64());
    }
    assert_eq!(
        numbers.len(),
        packets.len(),
        "distinct packet numbers\n{out}"
    );
}

/// Datagrams dropped one after another (NO_SOCKET) and echo requests
/// consumed one after another: each skb is freed before the next is made,
/// so the kernel tends to hand out the same memory again. Each life is its
/// own packet all the same, in json (`packet`) and in the table.
fn freed_and_reused_skbs_start_new_packets() {
    let mark = hex(marks::FREED_REUSED);
    let json = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "json"]);
    let table = Ipft::start(&["-b", "tracepoint", "-m", &mark]);
    let flow = ClosedPort::new(marks::FREED_REUSED);
    let (dropped, pinged) = (6, 4);
    for _ in 0..dropped {
        flow.send_and_wait_dropped();
    }
    flows::ping(marks::FREED_REUSED, LOCALHOST, pinged);
    let json_out = json.stop(libc::SIGINT);
    let table_out = table.stop(libc::SIGINT);

    let lines = json_values(&json_out.stdout);
    let packets = by_packet(&lines);
    let pointers: HashSet<&str> = lines.iter().map(|l| text(l, "packet_id")).collect();
    let why = format!(
        "{} packets over {} skb addresses",
        packets.len(),
        pointers.len()
    );
    assert_eq!(
        packets.len(),
        dropped + pinged as usize,
        "{why}\n{json_out}"
    );
    assert_one_life_each(&packets, &json_out);

    let groups = parse_table(&table_out.stdout);
    assert_eq!(groups.len(), dropped + pinged as usize, "{table_out}");
    for rows in &groups {
        let names = row_names(rows);
        let frees = names.iter().filter(|n| is_free(n)).count();
        assert!(
            frees == 1 && is_free(names.last().unwrap()),
            "{names:?}\n{table_out}"
        );
    }
    let pings = groups.iter().filter(|g| in_order(&row_names(g), PING_PATH));
    assert_eq!(pings.count(), pinged as usize, "{table_out}");
}

ipft_tests::tests! {
    closed_port_drop_is_no_socket,
    closed_port_drop_reason_in_json,
    iptables_output_drop_is_netfilter_drop,
    iptables_input_drop_is_netfilter_drop,
    summary_lines_name_each_flow,
    summary_of_an_ipv6_datagram,
    fields_follow_every_row,
    track_follows_the_packet_into_a_namespace,
    freed_and_reused_skbs_start_new_packets,
}
