//! `-f EXPR`: packets selected by a pcap-filter expression, compiled by
//! libpcap and run in the kernel, with or without a mark.
//!
//! Other tests run at the same time and send datagrams on 127.0.0.1 too,
//! so each filter names the ports of this test's own receivers, bound
//! before ipft starts: no other test's packet can match.
//!
//! The tracing tests use the tracepoint backend, which every kernel with
//! BTF has, so that they check the same rows everywhere; the VM suite's
//! `-f` scenarios cover the function backends.
use std::net::UdpSocket;

use ipft_tests::{
    capabilities::Capabilities,
    checks,
    details::{by_packet, functions, json_values, summaries, text},
    kernel::monotonic_ns,
    marks,
    netns::NftTable,
    packets::{self, sink_on, UDP_PATH},
    parse::{in_order, parse_table},
    run,
    scripting::{poll_until, POLL_TIMEOUT},
    Ipft,
};

const V4: &str = "127.0.0.1";
const V6: &str = "[::1]";

/// `count` receivers on `ip`.
fn sinks(ip: &str, count: usize) -> Vec<UdpSocket> {
    (0..count).map(|_| sink_on(ip)).collect()
}

/// `udp and (dst port A or dst port B …)` for the receivers' ports.
fn to_ports(sinks: &[&UdpSocket]) -> String {
    let ports: Vec<String> = sinks
        .iter()
        .map(|s| format!("dst port {}", s.local_addr().unwrap().port()))
        .collect();
    format!("udp and ({})", ports.join(" or "))
}

/// The destinations of the traced packets, from their summary lines:
/// `UDP 127.0.0.1:40000 -> 127.0.0.1:9 len 45 dev lo` gives `127.0.0.1:9`.
fn destinations(stdout: &str) -> Vec<String> {
    let mut found: Vec<String> = summaries(stdout)
        .into_iter()
        .map(|s| {
            let s = s.unwrap_or_default();
            s.split(" -> ")
                .nth(1)
                .unwrap_or_default()
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    found.sort();
    found
}

fn addresses(sinks: &[&UdpSocket]) -> Vec<String> {
    let mut all: Vec<String> = sinks
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    all.sort();
    all
}

fn only_the_filters_datagrams_are_traced_ipv4_and_ipv6() {
    let (wanted4, wanted6, others) = (sinks(V4, 3), sinks(V6, 3), sinks(V4, 3));
    let wanted: Vec<&UdpSocket> = wanted4.iter().chain(&wanted6).collect();
    let ipft = Ipft::start(&["-b", "tracepoint", "-f", &to_ports(&wanted)]);
    let start = monotonic_ns();
    let (from4, from6) = (sink_on(V4), sink_on(V6));
    packets::send_to_each(&from4, &wanted4);
    packets::send_to_each(&from4, &others);
    packets::send_to_each(&from6, &wanted6);
    let out = ipft.stop(libc::SIGINT);

    let traced = parse_table(&out.stdout);
    assert_eq!(
        traced.len(),
        6,
        "one group per datagram the filter names, none for the others\n{out}"
    );
    assert_eq!(destinations(&out.stdout), addresses(&wanted), "{out}");
    checks::packets(&traced, UDP_PATH, start, monotonic_ns(), &out);
    checks::clean_exit(&out, checks::row_count(&traced));
}

fn with_a_mark_a_packet_must_match_both() {
    let (both, filter_only, mark_only) = (sinks(V4, 2), sinks(V4, 2), sinks(V4, 2));
    let named: Vec<&UdpSocket> = both.iter().chain(&filter_only).collect();
    let mark = format!("{:#x}", marks::FILTER_AND_MARK);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-f", &to_ports(&named)]);
    let start = monotonic_ns();
    let marked = packets::sender(Some(marks::FILTER_AND_MARK));
    packets::send_to_each(&marked, &both);
    packets::send_to_each(&packets::sender(None), &filter_only);
    packets::send_to_each(&marked, &mark_only);
    let out = ipft.stop(libc::SIGINT);

    let traced = parse_table(&out.stdout);
    let why = "marked and named by the filter: traced; only one of the two: not";
    assert_eq!(traced.len(), 2, "{why}\n{out}");
    assert_eq!(
        destinations(&out.stdout),
        addresses(&both.iter().collect::<Vec<_>>()),
        "{out}"
    );
    checks::packets(&traced, UDP_PATH, start, monotonic_ns(), &out);
    checks::clean_exit(&out, checks::row_count(&traced));
}

/// With -f a matched packet is followed until it is freed, unless
/// `--no-track`: here nftables rewrites a datagram's destination port as
/// it is received, after which the filter no longer matches it, and the
/// kernel drops it (no socket has the new port).
fn a_matched_packet_is_followed_after_its_headers_change() {
    let to = sink_on(V4);
    let port = to.local_addr().unwrap().port();
    let unused = sink_on(V4).local_addr().unwrap().port();
    let rule = format!("udp dport {port} udp dport set {unused}");
    let _table = NftTable::new("ipft_filter_track", "prerouting", &[&rule]);
    let filter = format!("udp dst port {port}");
    let args = ["-b", "tracepoint", "-f", &filter, "-o", "json"];
    let tracking = Ipft::start(&args);
    let not_tracking = Ipft::start(&[&args[..], &["--no-track"]].concat());
    packets::send(&sink_on(V4), &to);
    let dropped = poll_until(POLL_TIMEOUT, || tracking.stdout().contains("NO_SOCKET"));
    let (tracked, untracked) = (tracking.stop(libc::SIGINT), not_tracking.stop(libc::SIGINT));

    assert!(dropped, "the drop after the rewrite is traced\n{tracked}");
    let (tracked, untracked) = (json_values(&tracked.stdout), json_values(&untracked.stdout));
    let (tracked, untracked) = (by_packet(&tracked), by_packet(&untracked));
    assert_eq!(
        (tracked.len(), untracked.len()),
        (1, 1),
        "{tracked:?}\n{untracked:?}"
    );
    let path: Vec<&str> = UDP_PATH.iter().copied().chain(["kfree_skb"]).collect();
    assert!(in_order(&functions(&tracked[0]), &path), "{tracked:?}");
    assert_eq!(text(tracked[0].last().unwrap(), "drop_reason"), "NO_SOCKET");
    let names = functions(&untracked[0]);
    assert!(in_order(&names, UDP_PATH), "{names:?}");
    assert_eq!(
        names.last(),
        Some(&"netif_receive_skb"),
        "not followed past the rewrite: {names:?}"
    );
}

/// Exit `code` with one line on stderr containing `says`, having attached
/// nothing.
fn refused(args: &[&str], code: i32, says: &str) {
    let out = run(args);
    assert_eq!(out.code(), Some(code), "{out}");
    let lines = out.stderr_lines();
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("ipft: ") && last.contains(says), "{out}");
    assert!(
        !out.stderr.contains("Attaching"),
        "nothing is attached\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

fn filters_libpcap_rejects_are_usage_errors_with_its_reason() {
    refused(
        &["-f", "udp port 53 and"],
        2,
        "libpcap rejects the filter 'udp port 53 and': can't parse filter expression: syntax error",
    );
    refused(&["-f", "ip broadcast"], 2, "netmask not known");
    refused(
        &["-m", "1", "-f", "udp port nosuchservice"],
        2,
        "nosuchservice",
    );
}

fn filters_ipft_cannot_translate_name_the_construct() {
    refused(
        &["-f", "ip6 protochain 6"],
        2,
        "a backward jump (libpcap's protochain), which ipft cannot translate",
    );
    let huge: Vec<String> = (0..2000).map(|i| format!("tcp[{i}:2] == {i}")).collect();
    refused(
        &["-f", &huge.join(" or ")],
        2,
        "classic BPF instructions, more than the 4096 ipft takes",
    );
}

/// 1,200 terms of `tcp[i:2] == i`: about 3,500 classic instructions, within
/// the 4,096 ipft takes; in eBPF about 31,000 where packet loads go through
/// `bpf_rdonly_cast` (6.2), far more where each needs a helper call.
fn long_filter() -> String {
    let terms: Vec<String> = (0..1200).map(|i| format!("tcp[{i}:2] == {i}")).collect();
    terms.join(" or ")
}

/// Where the kernel lacks `bpf_rdonly_cast`, each packet load is a helper
/// call, and the long filter is too long.
fn helper_packet_loads(kernel: &Capabilities) -> Result<(), String> {
    match kernel.rdonly_cast {
        true => Err("this kernel has bpf_rdonly_cast: packet loads are short, and this filter (about 31,000 eBPF instructions) fits within eBPF's jumps (a_long_filter_loads_where_packet_loads_are_direct runs it)".into()),
        false => Ok(()),
    }
}

/// Where it has it, packet loads are a few instructions each.
fn direct_packet_loads(kernel: &Capabilities) -> Result<(), String> {
    match kernel.rdonly_cast {
        true => Ok(()),
        false => Err("this kernel lacks bpf_rdonly_cast: the filter is too long here".into()),
    }
}

fn a_filter_too_long_for_ebpf_fails_with_its_length() {
    refused(
        &["-f", &long_filter()],
        1,
        "eBPF instructions are more than a jump can cross",
    );
}

fn a_long_filter_loads_where_packet_loads_are_direct() {
    let filter = long_filter();
    let args = [
        "-b",
        "tracepoint",
        "-r",
        "^netif_receive_skb$",
        "-f",
        &filter,
    ];
    let out = Ipft::start(&args).stop(libc::SIGINT);
    checks::clean_exit(&out, 0);
}

ipft_tests::tests! {
    only_the_filters_datagrams_are_traced_ipv4_and_ipv6,
    with_a_mark_a_packet_must_match_both,
    a_matched_packet_is_followed_after_its_headers_change,
    filters_libpcap_rejects_are_usage_errors_with_its_reason,
    filters_ipft_cannot_translate_name_the_construct,
    a_filter_too_long_for_ebpf_fails_with_its_length: helper_packet_loads,
    a_long_filter_loads_where_packet_loads_are_direct: direct_packet_loads,
}
