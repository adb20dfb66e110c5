//! `-w`: the traced packets as pcapng, read back by tshark (Wireshark's own
//! reader), with the tracepoint backend and real marked packets: the
//! frames' addresses, ports and lengths are the packets sent, their
//! comments name ipft's rows, their interfaces the devices and namespaces
//! crossed; `-w -` streams to a live tshark; every way ipft ends leaves a
//! complete file. Each test owns a mark (see `marks`).
use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use regex::Regex;
use serde_json::Value;

use ipft_tests::{
    details::{by_packet, json_values, text},
    flows::{self, ClosedPort},
    kernel::skb_tracepoints,
    load, marks,
    netns::Veth,
    packets::{self, UDP_PATH},
    parse::{parse_table, table_header, Tracer},
    scripting::{poll_until, Scratch, POLL_TIMEOUT},
    tshark::{self, netns_inode, Frame},
    Ipft, Output, Setup, StdoutMode,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

/// ipft on the tracepoint backend with `args`.
fn start(mark: u32, args: &[&str]) -> Ipft {
    let mark = hex(mark);
    Ipft::start(&[&["-m", &mark, "-b", "tracepoint"], args].concat())
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `lo@INODE` of the namespace the tests run in.
fn loopback() -> String {
    format!("lo@{}", netns_inode("/proc/self/ns/net"))
}

/// The functions the frames' comments name, in file order.
fn functions(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(Frame::function).collect()
}

/// A UDP datagram of 4 bytes on loopback: Ethernet, IPv4, UDP, "ipft".
const DATAGRAM_FRAME: u32 = 14 + 20 + 8 + 4;

/// Datagrams to sockets that never read: each packet's frames are its
/// first row and its last (netif_receive_skb: no tracepoint fires later),
/// with the addresses, ports and length sent, on `lo@INODE`, commented with
/// the row's function and packet number as json has them, stamped with the
/// row's time in wall-clock time.
fn datagrams_are_frames_with_their_addresses_ports_and_rows() {
    let scratch = Scratch::new("pcap-udp");
    let file = scratch.join("udp.pcapng");
    let ipft = start(marks::PCAP_UDP, &["-o", "json", "-w", path(&file)]);
    let sender = packets::sender(Some(marks::PCAP_UDP));
    let sent = 3;
    let sinks = packets::send_datagrams(&sender, sent);
    let out = ipft.stop(libc::SIGINT);

    let frames = tshark::read(&file).clean(&out.to_string());
    let packets = by_packet(&json_values(&out.stdout));
    assert_eq!(packets.len(), sent, "{out}");
    assert_eq!(frames.len(), 2 * sent, "{frames:#?}\n{out}");
    for lines in &packets {
        let number = lines[0]["packet"].as_u64().unwrap() as u32;
        let mine: Vec<Frame> = frames
            .iter()
            .filter(|f| f.packet() == number)
            .cloned()
            .collect();
        let (first, last) = (
            text(&lines[0], "function"),
            text(lines.last().unwrap(), "function"),
        );
        assert_eq!(functions(&mine), [first, last], "{frames:#?}\n{out}");
        assert_eq!((first, last), (UDP_PATH[0], "netif_receive_skb"), "{out}");
    }
    let from = sender.local_addr().unwrap().port().to_string();
    for sink in &sinks {
        let to = sink.local_addr().unwrap().port().to_string();
        let to_sink = frames.iter().filter(|f| f.udp_dst == to).count();
        assert_eq!(to_sink, 2, "two frames to port {to}\n{frames:#?}");
    }
    for f in &frames {
        assert_eq!(f.interface, loopback(), "{f:?}");
        assert_eq!(f.protocols, "eth:ethertype:ip:udp:data", "{f:?}");
        assert_eq!(
            (f.ip_src.as_str(), f.ip_dst.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
        assert_eq!(
            (f.udp_src.as_str(), f.len, f.cap_len),
            (from.as_str(), DATAGRAM_FRAME, DATAGRAM_FRAME),
            "{f:?}"
        );
    }
    assert_times_are_the_rows(&frames, &packets);
}

/// Each frame's time is its row's monotonic timestamp plus one offset, the
/// wall clock's lead over the monotonic clock.
fn assert_times_are_the_rows(frames: &[Frame], packets: &[Vec<Value>]) {
    let offsets: Vec<i128> = frames
        .iter()
        .map(|f| {
            let row = packets
                .iter()
                .flatten()
                .find(|l| {
                    l["packet"].as_u64() == Some(f.packet().into())
                        && text(l, "function") == f.function()
                })
                .unwrap_or_else(|| panic!("no json row for frame {f:?}"));
            f.epoch_ns() - i128::from(row["timestamp"].as_u64().unwrap())
        })
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] == w[1]),
        "one clock offset: {offsets:?}"
    );
    let now = tshark::realtime_offset_ns();
    assert!(
        (offsets[0] - now).abs() < 1_000_000_000,
        "offset {} vs the clocks' {now}",
        offsets[0]
    );
}

/// One echo request traced three ways at once: by default its first and
/// last rows; `--capture-at all --snaplen 20` every row, cut to 20 bytes of
/// its 98; `--capture-at '^netif_'` the rows of those functions only.
fn capture_points_and_snaplen() {
    let scratch = Scratch::new("pcap-points");
    let files = ["default", "all", "netif"].map(|n| scratch.join(&format!("{n}.pcapng")));
    let json = ["-o", "json", "-w"];
    let default = start(
        marks::PCAP_POINTS,
        &[&json[..], &[path(&files[0])]].concat(),
    );
    let all = start(
        marks::PCAP_POINTS,
        &[
            &json[..],
            &[path(&files[1]), "--capture-at", "all", "--snaplen", "20"],
        ]
        .concat(),
    );
    let netif = start(
        marks::PCAP_POINTS,
        &[&json[..], &[path(&files[2]), "--capture-at", "^netif_"]].concat(),
    );
    flows::ping(marks::PCAP_POINTS, IpAddr::from([127, 0, 0, 1]), 1);
    let outs = [default, all, netif].map(|ipft| ipft.stop(libc::SIGINT));
    let rows = |out: &Output| -> Vec<String> {
        json_values(&out.stdout)
            .iter()
            .map(|l| text(l, "function").to_string())
            .collect()
    };
    let read = |i: usize| tshark::read(&files[i]).clean(&outs[i].to_string());

    let (frames, names) = (read(0), rows(&outs[0]));
    assert_eq!(
        functions(&frames),
        [names[0].as_str(), names.last().unwrap()],
        "{}",
        outs[0]
    );
    assert_eq!(
        functions(&frames),
        ["net_dev_queue", "consume_skb"],
        "{}",
        outs[0]
    );
    assert!(
        frames
            .iter()
            .all(|f| (f.len, f.cap_len) == (98, 98) && f.icmp_type == "8"),
        "{frames:#?}"
    );

    let (frames, names) = (read(1), rows(&outs[1]));
    assert_eq!(functions(&frames), names, "{}", outs[1]);
    assert!(
        frames.iter().all(|f| (f.len, f.cap_len) == (98, 20)),
        "{frames:#?}"
    );

    let (frames, names) = (read(2), rows(&outs[2]));
    let netif: Vec<&String> = names.iter().filter(|n| n.starts_with("netif_")).collect();
    assert!(
        netif.len() >= 2,
        "netif_rx and netif_receive_skb\n{}",
        outs[2]
    );
    assert_eq!(functions(&frames), netif, "{}", outs[2]);
}

/// A ping into a namespace, followed with `--track`: a frame on the host's
/// veth in this namespace, one where it arrives on eth0 in the other (a new
/// device is a new hop), and the last where icmp_rcv consumes it; one
/// interface per device, named `dev@INODE` of its namespace.
fn a_namespace_crossing_is_a_frame_per_device() {
    let veth = Veth::new("pcap", 11);
    veth.resolve_neighbour();
    let scratch = Scratch::new("pcap-netns");
    let file = scratch.join("netns.pcapng");
    let ipft = start(marks::PCAP_NETNS, &["--track", "-w", path(&file)]);
    flows::ping(marks::PCAP_NETNS, IpAddr::V4(veth.peer_addr), 1);
    let out = ipft.stop(libc::SIGINT);

    let frames = tshark::read(&file).clean(&out.to_string());
    let host = format!("{}@{}", veth.host_dev, netns_inode("/proc/self/ns/net"));
    let peer = format!(
        "eth0@{}",
        netns_inode(&format!("/run/netns/{}", veth.netns))
    );
    assert!(frames.len() >= 3, "{frames:#?}\n{out}");
    let (first, last) = (&frames[0], frames.last().unwrap());
    assert_eq!(
        (first.interface.as_str(), first.function()),
        (host.as_str(), "net_dev_queue"),
        "{frames:#?}"
    );
    assert_eq!(
        (last.interface.as_str(), last.function()),
        (peer.as_str(), "consume_skb"),
        "{frames:#?}"
    );
    let arrival = frames.iter().find(|f| f.interface == peer).unwrap();
    assert!(
        arrival.function().starts_with("netif_rx"),
        "the hop is a frame: {frames:#?}"
    );
    for f in &frames {
        assert!(f.interface == host || f.interface == peer, "{f:?}");
        let flow = (f.ip_src.as_str(), f.ip_dst.as_str(), f.icmp_type.as_str());
        assert_eq!(
            flow,
            (
                veth.host_addr.to_string().as_str(),
                veth.peer_addr.to_string().as_str(),
                "8"
            ),
            "{f:?}"
        );
    }
    assert_eq!(parse_table(&out.stdout).len(), 1, "one packet\n{out}");
}

/// A datagram to a closed port: the last frame is the drop, its comment
/// says why as the table's row does.
fn a_drop_is_a_frame_with_its_reason() {
    let scratch = Scratch::new("pcap-drop");
    let file = scratch.join("drop.pcapng");
    let flow = ClosedPort::new(marks::PCAP_DROP);
    let ipft = start(marks::PCAP_DROP, &["-w", path(&file)]);
    flow.send_and_wait_dropped();
    let out = ipft.stop(libc::SIGINT);

    let frames = tshark::read(&file).clean(&out.to_string());
    let last = frames.last().unwrap_or_else(|| panic!("no frame\n{out}"));
    let comment = Regex::new(r"^kfree_skb packet \d+ \(drop: NO_SOCKET\)$").unwrap();
    assert!(comment.is_match(&last.comment), "{frames:#?}\n{out}");
    assert_eq!(frames.len(), 2, "first row and the drop\n{frames:#?}");
    for f in &frames {
        let ports = (f.udp_src.as_str(), f.udp_dst.as_str());
        assert_eq!(
            ports,
            (
                flow.local().port().to_string().as_str(),
                flow.peer().port().to_string().as_str()
            )
        );
    }
    assert!(
        out.stdout.contains("kfree_skb (drop: NO_SOCKET)"),
        "the table on stdout\n{out}"
    );
}

/// Lines a reader thread collects from a child's stdout.
fn collect_lines(
    from: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// `ipft -w - | tshark -r -`: each datagram's first frame reaches tshark
/// while ipft still runs; the last frames come when it stops (SIGTERM);
/// the table goes to stderr.
fn stdout_streams_pcapng_to_a_live_tshark() {
    let caller = Setup {
        stdout: StdoutMode::Caller,
        ..Setup::default()
    };
    let mark = hex(marks::PCAP_STREAM);
    let mut ipft = Ipft::spawn_with(&["-m", &mark, "-b", "tracepoint", "-w", "-"], caller);
    ipft.wait_ready();
    let mut reader = tshark::spawn_reader(ipft.take_stdout(), &[]);
    let (lines, collecting) = collect_lines(reader.stdout.take().unwrap());
    let sent = 2;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::PCAP_STREAM)), sent);
    let live = poll_until(POLL_TIMEOUT, || lines.lock().unwrap().len() >= sent);
    assert!(ipft.try_exit(Duration::ZERO).is_none(), "ipft still runs");
    let out = ipft.stop(libc::SIGTERM);
    collecting.join().unwrap();
    let stdout = lines.lock().unwrap().join("\n");
    let frames = tshark::finish_reader(reader, stdout.as_bytes()).clean(&out.to_string());

    assert!(live, "no frame reached tshark while ipft ran\n{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        functions(&frames),
        [
            "net_dev_queue",
            "net_dev_queue",
            "netif_receive_skb",
            "netif_receive_skb"
        ],
        "{out}"
    );
    assert!(out.stdout.is_empty(), "stdout is the pcapng stream\n{out}");
    let header = format!("\n{}\n", table_header(Tracer::Function));
    let table = out.stderr.find(&header).map(|at| &out.stderr[at..]);
    let table = table.unwrap_or_else(|| panic!("no table on stderr\n{out}"));
    assert_eq!(parse_table(table).len(), sent, "the table on stderr\n{out}");
}

/// However ipft ends — SIGINT, SIGTERM, `--duration`, `--max-traces`, or
/// its json reader gone — the file opens in tshark, complete, with the
/// frames of what it traced.
fn every_ending_leaves_a_complete_file() {
    let scratch = Scratch::new("pcap-endings");
    let file = |name: &str| scratch.join(&format!("{name}.pcapng"));
    let mark = hex(marks::PCAP_ENDINGS);
    let base = ["-m", &mark, "-b", "tracepoint"];
    let with = |extra: &[&str], name: &str| -> Vec<String> {
        let file = file(name).to_string_lossy().into_owned();
        let args = base.iter().chain(extra).map(|a| a.to_string());
        args.chain(["-w".to_string(), file]).collect()
    };
    let start = |extra: &[&str], name: &str| Ipft::start(&strs(&with(extra, name)));
    let sigint = start(&[], "sigint");
    let sigterm = start(&[], "sigterm");
    let max_traces = start(&["--max-traces", "3"], "max-traces");
    let mut closed = Ipft::spawn_with(
        &strs(&with(&["-o", "json"], "closed")),
        Setup {
            stdout: StdoutMode::FirstLineThenClose,
            ..Setup::default()
        },
    );
    closed.wait_ready();
    // Last, so that its 20 s are not spent while the others start (they
    // take seconds each in an emulated guest).
    let duration = start(&["--duration", "20"], "duration");
    let sender = packets::sender(Some(marks::PCAP_ENDINGS));
    let mut sinks = packets::send_datagrams(&sender, 2);
    // A closed pipe is noticed at the next write: send until it exits.
    let exited = poll_until(POLL_TIMEOUT, || {
        sinks.extend(packets::send_datagrams(&sender, 1));
        closed.try_exit(Duration::from_millis(100)).is_some()
    });
    assert!(exited, "ipft did not exit once its reader left");
    let outs = [
        ("sigint", sigint.stop(libc::SIGINT)),
        ("sigterm", sigterm.stop(libc::SIGTERM)),
        ("duration", duration.wait_exit()),
        ("max-traces", max_traces.wait_exit()),
        ("closed", closed.wait_exit()),
    ];
    for (name, out) in &outs {
        assert_eq!(out.code(), Some(0), "{name}\n{out}");
        let frames = tshark::read(&file(name)).clean(&format!("{name}\n{out}"));
        assert!(!frames.is_empty(), "{name}: no frame\n{out}");
        for f in &frames {
            let tracepoint = skb_tracepoints().iter().any(|(tp, _)| tp == f.function());
            assert!(tracepoint, "{name}: {f:?}");
            assert_eq!(f.len, DATAGRAM_FRAME, "{name}: {f:?}");
        }
    }
}

/// `ipft -w - | tshark -r - -c 1`: tshark leaves after one frame; ipft
/// notices at its next write and exits 0 on its own.
fn a_closed_pcapng_pipe_stops_ipft() {
    let caller = Setup {
        stdout: StdoutMode::Caller,
        ..Setup::default()
    };
    let mark = hex(marks::PCAP_CLOSED);
    let mut ipft = Ipft::spawn_with(&["-m", &mark, "-b", "tracepoint", "-w", "-"], caller);
    ipft.wait_ready();
    let mut reader = tshark::spawn_reader(ipft.take_stdout(), &["-c", "1"]);
    let (lines, collecting) = collect_lines(reader.stdout.take().unwrap());
    let sender = packets::sender(Some(marks::PCAP_CLOSED));
    let mut sinks = Vec::new();
    let exited = poll_until(POLL_TIMEOUT, || {
        sinks.extend(packets::send_datagrams(&sender, 1));
        ipft.try_exit(Duration::from_millis(100)).is_some()
    });
    let out = ipft.wait_exit();
    collecting.join().unwrap();
    let stdout = lines.lock().unwrap().join("\n");
    let frames = tshark::finish_reader(reader, stdout.as_bytes()).clean(&out.to_string());
    assert!(exited, "ipft did not exit once tshark left\n{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(functions(&frames), ["net_dev_queue"], "{out}");
}

/// A burst into one page of perf buffer per CPU: what does not fit is
/// counted on stderr, which suggests a smaller --snaplen, and the file
/// still opens, with no more frames than two per datagram sent.
fn lost_captures_are_counted_and_the_file_stays_valid() {
    let scratch = Scratch::new("pcap-lost");
    let file = scratch.join("lost.pcapng");
    let args = [
        "--perf-page-count",
        "1",
        "--perf-wakeup-events",
        "64",
        "-w",
        path(&file),
    ];
    let ipft = start(marks::PCAP_LOST, &args);
    let sent = 500;
    let sinks = load::flood(marks::PCAP_LOST, sent);
    let out = ipft.stop(libc::SIGINT);
    drop(sinks);

    let frames = tshark::read(&file).clean(&out.to_string());
    assert!(
        load::lost(&out.stderr) > 0,
        "a page per CPU holds a few records\n{out}"
    );
    assert!(
        out.stderr
            .contains("try a larger --perf-page-count or a smaller --snaplen"),
        "{out}"
    );
    assert!(
        !frames.is_empty() && frames.len() <= 2 * (sent + 1),
        "{} frames",
        frames.len()
    );
}

ipft_tests::tests! {
    datagrams_are_frames_with_their_addresses_ports_and_rows,
    capture_points_and_snaplen,
    a_namespace_crossing_is_a_frame_per_device,
    a_drop_is_a_frame_with_its_reason,
    stdout_streams_pcapng_to_a_live_tshark,
    every_ending_leaves_a_complete_file,
    a_closed_pcapng_pipe_stops_ipft,
    lost_captures_are_counted_and_the_file_stays_valid,
}
