//! Each backend as this kernel allows it (see `capabilities`, which asks
//! the kernel, not ipft): what `-b auto` picks and the line saying why, a
//! ping traced by every backend that works here, function_graph where
//! fentry works, and, where a backend traces functions, skb lives that end
//! where no tracepoint fires. A test that needs what this kernel lacks is
//! ignored here (see `needs`); the VM suite runs them all on kernels that
//! have more.
use std::collections::HashSet;

use ipft_tests::{
    capabilities, checks, flows, load, marks, needs, packets,
    parse::{self, parse_table, row_names, Tracer},
    run, Ipft, Output,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

/// Runs ipft with `args`, around one marked ping to 127.0.0.1.
fn around_a_ping(args: &[&str], mark: u32) -> Output {
    let ping = format!("ping -m {mark} -c 1 -W 5 127.0.0.1 >/dev/null");
    run(&[args, &["--", "sh", "-c", &ping]].concat())
}

/// The echo request's one row: where icmp_rcv frees it. consume_skb is a
/// function and a tracepoint both, so every backend can trace it.
fn assert_freed_by_consume_skb(out: &Output) {
    assert_eq!(out.code(), Some(0), "ping's status\n{out}");
    let packets = parse_table(&out.stdout);
    assert_eq!(packets.len(), 1, "one echo request\n{out}");
    assert_eq!(row_names(&packets[0]), ["consume_skb"], "{out}");
    assert_eq!(packets[0][0].module, "vmlinux", "{out}");
}

fn auto_picks_what_this_kernel_allows() {
    let mark = marks::AUTO;
    let out = around_a_ping(&["-m", &hex(mark), "-r", "^consume_skb$"], mark);
    let first = out.stderr_lines().first().map(|l| l.to_string());
    let want = capabilities().auto_line();
    assert_eq!(first, Some(want), "the backend and why, first\n{out}");
    assert_freed_by_consume_skb(&out);
}

fn every_backend_this_kernel_allows_traces_a_ping() {
    let mark = marks::EACH_BACKEND;
    for backend in capabilities().backends() {
        let args = ["-b", backend, "-m", &hex(mark), "-r", "^consume_skb$"];
        let out = around_a_ping(&args, mark);
        let attach = parse::attach(&out.stderr);
        let attach = attach.unwrap_or_else(|| panic!("no attach line\n{out}"));
        let why = "-r leaves one target, and it attaches";
        assert_eq!((attach.succeeded, attach.failed), (1, 0), "{why}\n{out}");
        assert_freed_by_consume_skb(&out);
    }
}

/// The receive path of an echo request, nested: ip_rcv calls (through
/// ip_rcv_finish) ip_local_deliver, which calls icmp_rcv, which frees it.
const GRAPH_RE: &str =
    "^(ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|consume_skb)$";

/// `-t function_graph` without `-b`: auto takes the best backend that
/// sees returns (kprobe-multi, kprobe, ftrace), and each call shows its
/// return, nested, with its value.
fn function_graph_nests_calls_and_returns() {
    let kernel = capabilities();
    let mark = marks::GRAPH;
    let args = ["-m", &hex(mark), "-t", "function_graph", "-r", GRAPH_RE];
    let out = around_a_ping(&args, mark);
    assert_eq!(out.code(), Some(0), "{out}");
    let first = out.stderr_lines().first().copied();
    assert_eq!(first, kernel.auto_graph_line().as_deref(), "{out}");
    let packets = parse::table(&out.stdout, Tracer::FunctionGraph);
    let packets = packets.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(packets.len(), 1, "one echo request\n{out}");
    let rows = &packets[0].rows;
    let deepest = checks::nesting(rows, &out);
    assert!(deepest >= 3, "ip_rcv > ip_local_deliver > icmp_rcv\n{out}");
    let calls: Vec<&str> = rows
        .iter()
        .filter(|r| !r.is_return)
        .map(|r| r.function.as_str())
        .collect();
    let path = ["ip_rcv", "ip_local_deliver", "icmp_rcv", "consume_skb"];
    assert!(parse::in_order(&calls, &path), "{calls:?}\n{out}");
    // int functions show their value (the echo request is delivered:
    // NET_RX_SUCCESS), void ones none.
    let returns = parse::returns(rows);
    let value = |name: &str| {
        returns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };
    assert_eq!(value("ip_rcv"), Some(Some("0")), "{returns:?}\n{out}");
    assert_eq!(value("icmp_rcv"), Some(Some("0")), "{returns:?}\n{out}");
    assert_eq!(value("consume_skb"), Some(None), "{returns:?}\n{out}");
}

/// Datagrams a socket reads, one after another, from one CPU: UDP frees
/// each on the read (kfree_skbmem) without any skb tracepoint, and the next
/// datagram tends to get the same memory. A function backend sees the free,
/// so each datagram is a packet of its own although the pointers repeat
/// (README: "a pointer seen again after the skb was freed starts a new
/// packet").
fn read_datagrams_are_separate_packets() {
    let backend = capabilities().function_backend();
    let backend = backend.expect("needs::function_backend found one");
    let mark = marks::READ_REUSED;
    let re = "^(__dev_queue_xmit|ip_rcv|udp_rcv|kfree_skbmem)$";
    let ipft = Ipft::start(&["-b", backend, "-m", &hex(mark), "-r", re, "-o", "json"]);
    let pinned = load::Pinned::here();
    let (sender, receiver) = (packets::sender(Some(mark)), packets::sink());
    let sent = 50;
    for _ in 0..sent {
        flows::send_and_read(&sender, &receiver);
    }
    drop(pinned);
    let out = ipft.stop(libc::SIGINT);

    let packets = parse::json(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let pointers: HashSet<&str> = packets
        .iter()
        .map(|p| p.rows[0].packet_id.as_str())
        .collect();
    let why = format!(
        "{} packets over {} skb addresses",
        packets.len(),
        pointers.len()
    );
    assert_eq!(packets.len(), sent, "one packet per datagram: {why}\n{out}");
    assert!(
        pointers.len() < sent,
        "no address was reused, so nothing was shown: {why}\n{out}"
    );
    let path = ["__dev_queue_xmit", "ip_rcv", "udp_rcv", "kfree_skbmem"];
    for packet in &packets {
        assert_eq!(packet.functions(), path, "-b {backend}: {why}\n{out}");
    }
}

ipft_tests::tests! {
    auto_picks_what_this_kernel_allows,
    every_backend_this_kernel_allows_traces_a_ping,
    function_graph_nests_calls_and_returns: needs::graph_backend,
    read_datagrams_are_separate_packets: needs::function_backend,
}
