//! How each packet ended (the `fate:` line ending its group, the `fate`
//! object of its last JSON line, the closing summary on stderr) and where
//! a dropped one was dropped (the caller of the freeing call, `--stack`),
//! with real packets through the tracepoint backend, which every BTF kernel
//! has. Each test owns a mark (see `marks`).
use std::net::UdpSocket;

use ipft_tests::{
    details::json_values,
    flows::ClosedPort,
    marks,
    netns::NftTable,
    packets,
    parse::{self, Packet, Tracer},
    Ipft, Output,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

/// The one packet of the table in `out`.
fn only_packet(out: &Output) -> Packet {
    let packets =
        parse::table(&out.stdout, Tracer::Function).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(packets.len(), 1, "one packet\n{out}");
    packets.into_iter().next().unwrap()
}

/// The closing summary line on stderr.
fn summary_line(out: &Output) -> String {
    let line = out.stderr.lines().find(|l| l.contains(" packet"));
    line.unwrap_or_else(|| panic!("no closing summary\n{out}"))
        .to_string()
}

/// A UDP datagram read by the socket it was sent to: delivered. The
/// tracepoint backend learns it from `skb_copy_datagram_iovec`, which
/// fires when a reader copies a paged skb (UDP copies a linear one with
/// no tracepoint): a datagram larger than a page-order allocation is
/// paged on loopback.
fn udp_read_by_its_socket_is_delivered() {
    let mark = hex(marks::FATE_DELIVERED);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark]);
    let sink = packets::sink();
    let sender = packets::sender(Some(marks::FATE_DELIVERED));
    let payload = vec![7u8; 20000];
    sender
        .send_to(&payload, sink.local_addr().unwrap())
        .expect("send a large datagram");
    read(&sink, payload.len());
    let out = ipft.stop(libc::SIGINT);

    let packet = only_packet(&out);
    let names = packet.functions();
    assert!(names.contains(&"skb_copy_datagram_iovec"), "{out}");
    assert_eq!(
        packet.fate.as_deref(),
        Some("delivered to UDP socket"),
        "{out}"
    );
    assert_eq!(summary_line(&out), "1 packet: 1 delivered", "{out}");
}

fn read(socket: &UdpSocket, len: usize) {
    let mut buf = vec![0u8; len + 1];
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let got = socket.recv(&mut buf).expect("read the datagram");
    assert_eq!(got, len);
}

/// A datagram to a closed port is dropped by UDP's receive function: the
/// drop row and the fate name it (the kfree_skb tracepoint's location).
fn udp_to_a_closed_port_is_dropped_by_udp_with_no_socket() {
    let flow = ClosedPort::new(marks::FATE_NO_SOCKET);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::FATE_NO_SOCKET)]);
    flow.send_and_wait_dropped();
    let out = ipft.stop(libc::SIGINT);

    let packet = only_packet(&out);
    let drop = packet.rows.last().unwrap();
    assert_eq!(drop.drop_reason.as_deref(), Some("NO_SOCKET"), "{out}");
    let caller = drop.caller.as_deref().unwrap_or_else(|| panic!("{out}"));
    // __udp4_lib_rcv+0x4bc: UDP's receive function, an offset into it.
    assert!(
        caller.starts_with("__udp4_lib_rcv+0x") || caller.starts_with("udp_rcv+0x"),
        "caller {caller}\n{out}"
    );
    let fate = packet.fate.clone().unwrap_or_default();
    assert_eq!(fate, format!("dropped at {caller} (NO_SOCKET)"), "{out}");
    let function = caller.split('+').next().unwrap();
    assert_eq!(
        summary_line(&out),
        format!("1 packet: 1 dropped (NO_SOCKET at {function})"),
        "{out}"
    );
}

/// Dropped by an nftables rule on the way out: freed by nf_hook_slow, or
/// (6.x kernels that drop in nf_tables itself) by nft_do_chain under it;
/// `--stack=drops` shows the kernel stack from the freeing function out,
/// on the drop row only.
fn nft_drop_names_nf_hook_slow_and_its_stack() {
    let mark = hex(marks::FATE_NFT_DROP);
    let rule = format!("meta mark {mark} drop");
    let _table = NftTable::new("ipft_fate_drop", "output", &[&rule]);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark, "--stack=drops"]);
    let sink = packets::sink();
    let sent =
        packets::sender(Some(marks::FATE_NFT_DROP)).send_to(b"ipft", sink.local_addr().unwrap());
    let out = ipft.stop(libc::SIGINT);
    assert!(sent.is_err(), "the drop rule refuses the datagram\n{out}");

    let packet = only_packet(&out);
    let drop = packet.rows.last().unwrap();
    assert_eq!(drop.drop_reason.as_deref(), Some("NETFILTER_DROP"), "{out}");
    let caller = drop.caller.as_deref().unwrap_or_default();
    // `nf_tables:nft_do_chain+0x…` where nf_tables is a module.
    let caller_function = caller
        .split('+')
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert!(
        caller.contains("+0x") && matches!(caller_function, "nf_hook_slow" | "nft_do_chain"),
        "caller {caller}\n{out}"
    );
    assert_eq!(
        packet.fate.as_deref(),
        Some(format!("dropped at {caller} (NETFILTER_DROP)").as_str()),
        "{out}"
    );
    // The stack: from the freeing function (kfree_skb's own frames, or
    // the function it is inlined in) out through nf_hook_slow to the
    // sendto system call.
    let frames: Vec<&str> = drop
        .stack
        .iter()
        .map(|f| f.split('+').next().unwrap())
        .collect();
    let at_caller = drop.stack.iter().position(|f| f == caller);
    let hook = frames.iter().position(|f| *f == "nf_hook_slow");
    assert!(
        at_caller.is_some_and(|c| c > 0),
        "the caller under the free\n{out}"
    );
    assert!(
        hook >= at_caller,
        "nf_hook_slow at or under the caller\n{out}"
    );
    assert!(frames.iter().any(|f| f.contains("sendto")), "{out}");
    assert!(
        frames.iter().all(|f| !f.starts_with("bpf_")),
        "ipft's own frames are left out\n{out}"
    );
    let others = &packet.rows[..packet.rows.len() - 1];
    assert!(others.iter().all(|r| r.stack.is_empty()), "{out}");
    assert_eq!(
        summary_line(&out),
        format!("1 packet: 1 dropped (NETFILTER_DROP at {caller_function})"),
        "{out}"
    );
}

/// JSON: the caller and the stack on the drop line, the fate object on
/// the packet's last line, the one that frees it.
fn json_fate_is_on_the_freeing_line() {
    let flow = ClosedPort::new(marks::FATE_JSON);
    let mark = hex(marks::FATE_JSON);
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "json", "--stack"]);
    flow.send_and_wait_dropped();
    let out = ipft.stop(libc::SIGINT);

    let lines = json_values(&out.stdout);
    let last = lines
        .iter()
        .max_by_key(|l| l["timestamp"].as_u64())
        .unwrap_or_else(|| panic!("no lines\n{out}"));
    let fate = &last["fate"];
    assert_eq!(fate["kind"], "dropped", "{out}");
    assert_eq!(fate["reason"], "NO_SOCKET", "{out}");
    assert_eq!(fate["function"], "kfree_skb", "{out}");
    assert_eq!(fate["caller"], last["caller"], "{out}");
    let with_fate = lines.iter().filter(|l| l.get("fate").is_some()).count();
    assert_eq!(with_fate, 1, "one fate per packet\n{out}");
    // --stack: every line has its stack.
    assert!(
        lines
            .iter()
            .all(|l| l["stack"].as_array().is_some_and(|s| !s.is_empty())),
        "{out}"
    );
}

ipft_tests::tests! {
    udp_read_by_its_socket_is_delivered,
    udp_to_a_closed_port_is_dropped_by_udp_with_no_socket,
    nft_drop_names_nf_hook_slow_and_its_stack,
    json_fate_is_on_the_freeing_line,
}
