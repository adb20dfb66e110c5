//! A marked-packet flood: 100,000 UDP datagrams over loopback (fewer in the
//! VM suite, see `flood_size`), sent as fast
//! as the socket takes them, traced by a json and an aggregate ipft at once.
//! Both keep running; every event is shown or counted as lost; memory stays
//! bounded (json streams, aggregate stops storing at --max-events).
//!
//! Its own test binary: cargo runs test binaries one after another, so the
//! flood's burst of CPU slows no other test of this suite.
use std::time::{Duration, Instant};

use ipft_tests::{load, marks, packets::UDP_PATH, parse::parse_table, Ipft, Setup, StdoutMode};

/// Datagrams in the flood: `IPFT_TEST_FLOOD`, else 100,000. The VM suite
/// sends fewer: emulation slows the sender and ipft alike, so a smaller
/// flood is as hard to keep up with, and a guest has minutes, not hours.
fn flood_size() -> usize {
    let size = std::env::var("IPFT_TEST_FLOOD").ok();
    size.and_then(|n| n.parse().ok()).unwrap_or(100_000)
}
/// Growth of ipft's memory during the flood, over what it used once ready:
/// a few MiB of batches and buffered output, nothing per event.
const RSS_GROWTH_KIB: u64 = 32 * 1024;
/// All json mode ever needs, debug build included.
const RSS_JSON_KIB: u64 = 100 * 1024;
const MAX_EVENTS: u64 = 1000;

fn a_flood_is_shown_or_counted_and_memory_stays_bounded() {
    let mark = format!("{:#x}", marks::FLOOD);
    let caller = Setup {
        stdout: StdoutMode::Caller,
        ..Setup::default()
    };
    let mut json = Ipft::spawn_with(
        &[
            "-b",
            "tracepoint",
            "-m",
            &mark,
            "-o",
            "json",
            "--field",
            "mark",
        ],
        caller,
    );
    json.wait_ready();
    let lines = load::count_lines(json.take_stdout(), marks::FLOOD);
    let max_events = MAX_EVENTS.to_string();
    let mut table = Ipft::start(&["-b", "tracepoint", "-m", &mark, "--max-events", &max_events]);
    let base = [load::rss_kib(json.pid()), load::rss_kib(table.pid())];
    let peaks = [json.pid(), table.pid()].map(load::PeakRss::watch);

    let flooding = Instant::now();
    let size = flood_size();
    let sinks = load::flood(marks::FLOOD, size);
    let flooded = flooding.elapsed();
    let sent = (size + 1) as u64; // the flood, then one waited for
    assert!(json.try_exit(Duration::ZERO).is_none(), "json ipft died");
    assert!(
        table.try_exit(Duration::ZERO).is_none(),
        "aggregate ipft died"
    );

    let json_out = json.stop(libc::SIGINT);
    let table_out = table.stop(libc::SIGINT);
    let [json_peak, table_peak] = peaks.map(load::PeakRss::finish);
    drop(sinks);
    let lines = lines.join().unwrap();

    // Each datagram passes at least the UDP path's tracepoints.
    let least = sent * UDP_PATH.len() as u64;
    // ...and at most a few more (dropped on a full receive queue): counted
    // twice, the sum would be far above.
    let most = 2 * least;

    assert_eq!(json_out.code(), Some(0), "{json_out}");
    assert_eq!(lines.marked, lines.total, "only the flood's mark");
    let lost = load::lost(&json_out.stderr);
    let accounted = lines.total + lost;
    assert!(
        (least..=most).contains(&accounted),
        "json: {} lines + {lost} lost, for {sent} datagrams\n{}",
        lines.total,
        json_out.stderr
    );
    assert!(
        json_peak <= base[0] + RSS_GROWTH_KIB && json_peak <= RSS_JSON_KIB,
        "json: VmRSS {base_kib} KiB when ready, {json_peak} KiB at its peak",
        base_kib = base[0]
    );

    assert_eq!(table_out.code(), Some(0), "{}", table_out.stderr);
    let rows: usize = parse_table(&table_out.stdout).iter().map(Vec::len).sum();
    assert_eq!(rows as u64, MAX_EVENTS, "the table shows what was stored");
    let seen = table_out.got_traces().expect("`Got N traces`");
    let (stored, counted) = load::stored_and_counted(&table_out.stderr)
        .unwrap_or_else(|| panic!("no `Stored the first N events` line\n{}", table_out.stderr));
    assert_eq!(
        (stored, stored + counted),
        (MAX_EVENTS, seen),
        "{}",
        table_out.stderr
    );
    let lost = load::lost(&table_out.stderr);
    assert!(
        (least..=most).contains(&(seen + lost)),
        "aggregate: {seen} seen + {lost} lost, for {sent} datagrams\n{}",
        table_out.stderr
    );
    assert!(
        table_peak <= base[1] + RSS_GROWTH_KIB,
        "aggregate: VmRSS {base_kib} KiB when ready, {table_peak} KiB at its peak",
        base_kib = base[1]
    );
    // Both tracers saw the same kernel events: what one showed or lost,
    // the other did too, in its own split.
    assert_eq!(
        accounted,
        seen + lost,
        "json and aggregate account for different numbers of events"
    );
    eprintln!(
        "flood: {sent} datagrams in {flooded:?}; json {} lines + {} lost, VmRSS {} -> {json_peak} KiB; \
         aggregate {seen} seen + {lost} lost, VmRSS {} -> {table_peak} KiB",
        lines.total,
        load::lost(&json_out.stderr),
        base[0],
        base[1]
    );
}

ipft_tests::tests! {
    a_flood_is_shown_or_counted_and_memory_stays_bounded,
}
