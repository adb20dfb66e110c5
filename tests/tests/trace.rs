//! Tracing real packets with `-b tracepoint`, the backend every BTF kernel
//! has (5.5+), so these hold on any kernel and the function column holds
//! tracepoint names; backends.rs covers what `auto` picks and the others.
//! Each test owns a mark (see `marks`): tests run in parallel, each with
//! its own ipft, and must not see each other's packets.
//!
//! Every test waits until its packets were delivered before it stops ipft
//! (see `packets::send_datagrams`); from then on the events are in the
//! kernel's buffers, and a correct ipft reports them on SIGINT.
use std::time::{Duration, Instant};

use regex::Regex;

use ipft_tests::{
    checks,
    kernel::{self, monotonic_ns},
    marks,
    packets::{self, PING_PATH, UDP_PATH},
    parse::{self, in_order, parse_json, parse_json_packets, parse_table, row_names},
    Ipft, Setup, StdoutMode,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

fn marked_udp_datagrams_one_group_each_and_nothing_else() {
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::UDP_AGGREGATE)]);
    let start = monotonic_ns();
    let marked = packets::sender(Some(marks::UDP_AGGREGATE));
    let other_mark = packets::sender(Some(marks::UDP_OTHER));
    let unmarked = packets::sender(None);
    let sent = 5;
    let mut sinks = Vec::new();
    for _ in 0..sent {
        for sender in [&marked, &other_mark, &unmarked] {
            sinks.extend(packets::send_datagrams(sender, 1));
        }
    }
    let out = ipft.stop(libc::SIGINT);
    let end = monotonic_ns();

    let packets = parse_table(&out.stdout);
    let why = "one group per marked datagram, none for other marks or no mark";
    assert_eq!(packets.len(), sent, "{why}\n{out}");
    checks::packets(&packets, UDP_PATH, start, end, &out);
    checks::clean_exit(&out, checks::row_count(&packets));
}

fn mask_selects_marks_by_their_bits() {
    let filter = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::MASKED_FILTER),
        "--mask",
        &hex(marks::MASKED_MASK),
    ];
    let ipft = Ipft::start(&filter);
    let start = monotonic_ns();
    let mut sinks = Vec::new();
    for mark in marks::MASKED_IN.into_iter().chain([marks::MASKED_OUT]) {
        sinks.extend(packets::send_datagrams(&packets::sender(Some(mark)), 2));
    }
    let out = ipft.stop(libc::SIGINT);

    let packets = parse_table(&out.stdout);
    let expected = 2 * marks::MASKED_IN.len();
    let why = format!(
        "marks {:x?} match {}, {:#x} does not",
        marks::MASKED_IN,
        filter.join(" "),
        marks::MASKED_OUT
    );
    assert_eq!(packets.len(), expected, "{why}\n{out}");
    checks::packets(&packets, UDP_PATH, start, monotonic_ns(), &out);
    checks::clean_exit(&out, checks::row_count(&packets));
}

/// JSON and aggregate tracers on the same mark at once: the JSON lines arrive
/// while ipft runs (flushed per line), and group into the same packets.
fn json_lines_group_like_the_table() {
    let mark = hex(marks::JSON);
    let json = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "json"]);
    let table = Ipft::start(&["-b", "tracepoint", "-m", &mark, "-o", "aggregate"]);
    let start = monotonic_ns();
    let sent = 4;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::JSON)), sent);
    let flushed = json.wait_for_stdout_lines(sent * UDP_PATH.len());
    let json_out = json.stop(libc::SIGINT);
    let table_out = table.stop(libc::SIGINT);
    let end = monotonic_ns();

    assert!(
        flushed,
        "JSON lines must be written as events arrive\n{json_out}"
    );
    assert_eq!(json_out.code(), Some(0), "{json_out}");
    assert!(!json_out.stderr.contains("panicked"), "{json_out}");
    let events = parse_json(&json_out.stdout);
    let cpus = kernel::possible_cpus();
    for event in &events {
        assert_eq!(event.module, "vmlinux", "{json_out}");
        assert!(
            !event.is_return,
            "the function tracer reports no returns\n{json_out}"
        );
        assert!(event.cpu < cpus, "{json_out}");
        let clock = start..=end;
        assert!(
            clock.contains(&event.tstamp),
            "timestamp not CLOCK_MONOTONIC\n{json_out}"
        );
    }
    let groups = parse_json_packets(&json_out.stdout);
    assert_eq!(groups.len(), sent, "one packet_id per datagram\n{json_out}");
    for group in &groups {
        let names = row_names(group);
        let ok = in_order(&names, UDP_PATH);
        assert!(ok, "packet {names:?} lacks {UDP_PATH:?}\n{json_out}");
    }

    let packets = parse_table(&table_out.stdout);
    checks::clean_exit(&table_out, checks::row_count(&packets));
    assert_eq!(packets.len(), sent, "{table_out}");
    // The two tracers time events separately, so compare which tracepoints
    // each packet went through, not timestamps.
    for (group, rows) in groups.iter().zip(&packets) {
        let mut from_json = row_names(group);
        let mut from_table = row_names(rows);
        from_json.sort();
        from_table.sort();
        assert_eq!(
            from_json, from_table,
            "JSON and table disagree\n{json_out}\n{table_out}"
        );
    }
}

/// The README's example: `ping -m 1431655765` traced with `-m 0x55555555`.
fn ping_request_is_traced_until_icmp_frees_it() {
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::PING)]);
    let start = monotonic_ns();
    // ping returns after the reply, so after icmp_rcv consumed the request.
    packets::ping(marks::PING);
    let out = ipft.stop(libc::SIGINT);

    let packets = parse_table(&out.stdout);
    assert_eq!(
        packets.len(),
        1,
        "only the echo request carries the mark\n{out}"
    );
    checks::packets(&packets, PING_PATH, start, monotonic_ns(), &out);
    let last = packets[0].last().unwrap();
    let why = "the trace ends where icmp_rcv frees the request";
    assert_eq!(last.function, "consume_skb", "{why}\n{out}");
    checks::clean_exit(&out, checks::row_count(&packets));
}

fn sigterm_prints_the_table_like_sigint() {
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(marks::SIGTERM)]);
    let programs = kernel::programs_held_by(ipft.pid());
    let start = monotonic_ns();
    let sent = 3;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::SIGTERM)), sent);
    let out = ipft.stop(libc::SIGTERM);

    let packets = parse_table(&out.stdout);
    assert_eq!(packets.len(), sent, "{out}");
    checks::packets(&packets, UDP_PATH, start, monotonic_ns(), &out);
    checks::clean_exit(&out, checks::row_count(&packets));
    assert!(
        !programs.is_empty(),
        "ipft held no BPF programs while tracing\n{out}"
    );
    let left = kernel::wait_unloaded(&programs);
    assert!(
        left.is_empty(),
        "programs {left:?} left after SIGTERM\n{out}"
    );
}

/// `-m` takes C's strtoul(s, 0) forms. Also exercises the explicit spelling
/// of the defaults and the tuning options.
fn mark_in_decimal_and_octal() {
    let decimal = marks::DECIMAL.to_string();
    let octal = format!("0{:o}", marks::OCTAL);
    let explicit = ["-b", "tracepoint", "-t", "function", "-o", "aggregate"];
    let by_decimal = Ipft::start(&[&["-m", decimal.as_str()][..], &explicit].concat());
    let tuned = ["-v", "--perf-page-count", "16", "--perf-wakeup-events", "1"];
    let by_octal = Ipft::start(&[&["-b", "tracepoint", "-m", octal.as_str()][..], &tuned].concat());
    let start = monotonic_ns();
    let mut sinks = Vec::new();
    for (mark, count) in [(marks::DECIMAL, 2), (marks::OCTAL, 3)] {
        sinks.extend(packets::send_datagrams(&packets::sender(Some(mark)), count));
    }
    for (ipft, arg, count) in [(by_decimal, decimal, 2), (by_octal, octal, 3)] {
        let out = ipft.stop(libc::SIGINT);
        let packets = parse_table(&out.stdout);
        assert_eq!(packets.len(), count, "-m {arg}\n{out}");
        checks::packets(&packets, UDP_PATH, start, monotonic_ns(), &out);
        assert_eq!(out.code(), Some(0), "{out}");
    }
}

/// `-r` keeps only matching tracepoints, and the attach line counts them.
fn regex_limits_what_is_traced() {
    let ipft = Ipft::start(&[
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::REGEX),
        "-r",
        "^net_dev_",
    ]);
    let sent = 2;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::REGEX)), sent);
    let out = ipft.stop(libc::SIGINT);

    let path = ["net_dev_queue", "net_dev_start_xmit", "net_dev_xmit"];
    let packets = parse_table(&out.stdout);
    assert_eq!(packets.len(), sent, "{out}");
    for rows in &packets {
        let why = "only ^net_dev_ tracepoints, each once";
        assert_eq!(row_names(rows), path, "{why}\n{out}");
    }
    checks::clean_exit(&out, checks::row_count(&packets));
    // What the kernel's BTF offers, not the three this packet passes.
    let tracepoints = kernel::skb_tracepoints();
    let all = tracepoints.len() as u64;
    let matching = tracepoints
        .iter()
        .filter(|(n, _)| n.starts_with("net_dev_"));
    let matching = matching.count() as u64;
    let attach = parse::attach(&out.stderr).unwrap();
    let why = "attach exactly what matches; `filtered` counts what -r excluded";
    assert_eq!(
        (attach.succeeded + attach.failed, attach.filtered),
        (matching, all - matching),
        "{why}\n{out}"
    );
}

/// A burst into the smallest perf buffer, which ipft is not woken to read:
/// whatever does not fit must be counted in `Lost N events`, never dropped
/// silently. The kernel writes a PERF_RECORD_LOST only when a later sample
/// fits, and here none comes after the burst, so a tracer must count failed
/// outputs itself (e.g. in a per-CPU map when bpf_perf_event_output fails).
fn lost_events_are_counted() {
    let mark = hex(marks::LOST);
    // Woken only after 100000 events, ipft reads the one-page buffers when it
    // drains them on SIGINT: the burst overflows them for certain.
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &mark,
        "--perf-page-count",
        "1",
        "--perf-wakeup-events",
        "100000",
    ];
    let ipft = Ipft::start(&args);
    let sent = 300;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::LOST)), sent);
    let out = ipft.stop(libc::SIGINT);

    assert_eq!(out.code(), Some(0), "{out}");
    let rows = checks::row_count(&parse_table(&out.stdout)) as u64;
    let lost = Regex::new(r"Lost (\d+) events").unwrap();
    let lost: u64 = lost
        .captures(&out.stderr)
        .map_or(0, |c| c[1].parse().unwrap());
    let emitted = (sent * UDP_PATH.len()) as u64;
    let why = format!(
        "{sent} datagrams make at least {emitted} events: {rows} printed, {lost} reported lost"
    );
    assert!(rows + lost >= emitted, "{why}\n{}", out.stderr);
    assert_eq!(
        out.got_traces(),
        Some(rows),
        "`Got N traces` counts what was printed\n{}",
        out.stderr
    );
}

/// On a terminal the progress lines are rewritten in place with `\r`, and the
/// final `Got N traces` counts every row printed.
fn progress_is_rewritten_in_place_on_a_tty() {
    let tty = Setup {
        stderr_tty: true,
        ..Setup::default()
    };
    let mut ipft = Ipft::spawn_with(&["-b", "tracepoint", "-m", &hex(marks::TTY)], tty);
    ipft.wait_ready();
    let sent = 3;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::TTY)), sent);
    let out = ipft.stop(libc::SIGINT);

    let packets = parse_table(&out.stdout);
    assert_eq!(packets.len(), sent, "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    // `\r`, maybe an ANSI sequence (erase line, colour), then the text.
    let redrawn = |text: &str| format!(r"\r(\x1b\[[0-9;]*[A-Za-z])*{text}");
    let attach = Regex::new(&redrawn(r"Attaching program \(total")).unwrap();
    assert!(
        attach.is_match(&out.stderr),
        "attach line not redrawn with \\r: {:?}",
        out.stderr
    );
    let got = Regex::new(&redrawn(r"Got (\d+) traces")).unwrap();
    let last = got.captures_iter(&out.stderr).last();
    let last = last.unwrap_or_else(|| panic!("no `\\rGot N traces`\n{out}"));
    assert_eq!(
        last[2].parse::<usize>().unwrap(),
        checks::row_count(&packets),
        "{out}"
    );
}

/// `ipft -o json | head -1`: once the reader is gone, ipft notices on its
/// next write and exits 0 on its own, without a panic.
fn closed_stdout_ends_ipft_cleanly() {
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::CLOSED_STDOUT),
        "-o",
        "json",
    ];
    let mut ipft = Ipft::spawn_with(
        &args,
        Setup {
            stdout: StdoutMode::FirstLineThenClose,
            ..Setup::default()
        },
    );
    ipft.wait_ready();
    let programs = kernel::programs_held_by(ipft.pid());
    let sender = packets::sender(Some(marks::CLOSED_STDOUT));
    // Keep sending: every datagram makes ipft write, and a write is how it
    // learns the pipe closed. The deadline is hang protection only.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sinks = Vec::new();
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        sinks.extend(packets::send_datagrams(&sender, 1));
        status = ipft.try_exit(Duration::from_millis(100));
    }
    let out = ipft.wait_exit();
    let why = "ipft must exit 0 on its own when its reader goes away";
    assert_eq!(out.code(), Some(0), "{why}\n{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    let first = parse_json(&out.stdout);
    assert_eq!(first.len(), 1, "the reader took one JSON line\n{out}");
    assert!(UDP_PATH.contains(&first[0].function.as_str()), "{out}");
    let left = kernel::wait_unloaded(&programs);
    assert!(left.is_empty(), "programs {left:?} left after EPIPE\n{out}");
}

ipft_tests::tests! {
    marked_udp_datagrams_one_group_each_and_nothing_else,
    mask_selects_marks_by_their_bits,
    json_lines_group_like_the_table,
    ping_request_is_traced_until_icmp_frees_it,
    sigterm_prints_the_table_like_sigint,
    mark_in_decimal_and_octal,
    regex_limits_what_is_traced,
    lost_events_are_counted,
    progress_is_rewritten_in_place_on_a_tty,
    closed_stdout_ends_ipft_cleanly,
}
