//! ipft in scripts and CI: command mode, bounded runs, output files,
//! readiness signals, exit codes, machine-readable listings, terminal-aware
//! stderr, generated docs, and the README's CI example run for real.
//! Runs that trace use `-b tracepoint`, which every kernel has; the
//! README's example runs as written, with the backend `auto` picks here.
//! Each test owns a mark (see `marks`); timeouts are hang protection only.
use std::{
    fs,
    net::{TcpListener, UdpSocket},
    os::unix::fs::PermissionsExt,
    process::Command,
    time::Duration,
};

use regex::Regex;

use ipft_tests::{
    checks, ipft_bin, kernel, marks,
    packets::{self, PING_PATH, UDP_PATH},
    parse::{self, in_order, parse_json, parse_json_packets, parse_table, row_names},
    run,
    scripting::{self, links_when_signalled, poll_until, run_bounded, Scratch, POLL_TIMEOUT},
    Ipft, Output, Setup,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

/// A shell command that sends one marked ICMP echo to 127.0.0.1 and returns
/// after the reply, so after the request was consumed.
fn ping_cmd(mark: u32) -> String {
    format!("ping -m {mark} -c 1 -W 5 127.0.0.1 >/dev/null")
}

/// The aggregate table at the end of `stdout`, after the command's own
/// output `before`.
fn table_after<'a>(out: &'a Output, before: &str) -> &'a str {
    let rest = out.stdout.strip_prefix(before);
    rest.unwrap_or_else(|| panic!("stdout must start with the command's {before:?}\n{out}"))
}

/// ipft attaches, says `Trace ready!`, only then runs the command, and stops
/// when the command exits, with its status; the table follows the command's
/// output on stdout.
fn command_mode_runs_once_ready_and_exits_with_the_commands_status() {
    let script = format!(
        "echo command-started >&2; {} && echo from-command; exit 3",
        ping_cmd(marks::COMMAND)
    );
    let out = run(&[
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::COMMAND),
        "--",
        "sh",
        "-c",
        &script,
    ]);

    assert_eq!(out.code(), Some(3), "the command's status\n{out}");
    let ready = out.stderr.find("Trace ready!");
    let started = out.stderr.find("command-started");
    let why = "the command starts after `Trace ready!`";
    assert!(ready.is_some() && started > ready, "{why}\n{out}");
    let packets = parse_table(table_after(&out, "from-command\n"));
    assert_eq!(packets.len(), 1, "one echo request\n{out}");
    checks::packets(&packets, PING_PATH, 0, u64::MAX, &out);
    assert_eq!(out.got_traces(), Some(checks::row_count(&packets) as u64));
}

fn command_mode_with_json() {
    let script = format!("{}; exit 3", ping_cmd(marks::COMMAND_JSON));
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::COMMAND_JSON),
        "-o",
        "json",
    ];
    let out = run(&[&args[..], &["--", "sh", "-c", &script]].concat());

    assert_eq!(out.code(), Some(3), "{out}");
    let groups = parse_json_packets(&out.stdout);
    assert_eq!(groups.len(), 1, "one echo request\n{out}");
    let names = row_names(&groups[0]);
    assert!(in_order(&names, PING_PATH), "{names:?}\n{out}");
}

/// Checked before attaching: one line, the shell's exit codes.
fn command_that_cannot_run_exits_127_or_126() {
    let mark = hex(marks::COMMAND_FAILS);
    let missing = "no-such-command-ipft-test";
    let out = run(&["-m", &mark, "--", missing, "arg"]);
    assert_eq!(out.code(), Some(127), "{out}");
    let line = format!("ipft: command not found: {missing}");
    assert_eq!(out.stderr_lines(), [line.as_str()], "{out}");

    let scratch = Scratch::new("not-executable");
    let plain = scratch.join("plain");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["-m", &mark, "--", plain.to_str().unwrap()]);
    assert_eq!(out.code(), Some(126), "{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "one line\n{out}");
    assert!(lines[0].contains(plain.to_str().unwrap()), "{out}");
    assert!(!out.stderr.contains("Trace ready!"), "{out}");
}

fn command_killed_by_a_signal_exits_128_plus_n() {
    let out = run(&[
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::COMMAND_FAILS),
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(out.code(), Some(128 + libc::SIGTERM), "{out}");
    assert!(out.stderr.contains("Trace ready!"), "{out}");
}

fn duration_stops_by_itself() {
    let out = Ipft::start(&[
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::DURATION),
        "--duration",
        "1",
    ])
    .wait_exit();
    let packets = parse_table(&out.stdout);
    assert!(packets.is_empty(), "nothing sends this mark\n{out}");
    checks::clean_exit(&out, 0);
    assert_eq!(out.got_traces(), Some(0), "{out}");
}

/// Sends marked datagrams, one at a time, until ipft exits on its own.
/// Returns the sinks (keep them until the end, see `packets`).
fn send_until_exit(ipft: &mut Ipft, mark: u32) -> Vec<UdpSocket> {
    let sender = packets::sender(Some(mark));
    let mut sinks = Vec::new();
    let exited = poll_until(POLL_TIMEOUT, || {
        sinks.extend(packets::send_datagrams(&sender, 1));
        ipft.try_exit(Duration::from_millis(100)).is_some()
    });
    assert!(exited, "ipft did not stop by itself\n{}", ipft.stderr());
    sinks
}

/// 3 events: fewer than one datagram makes, so ipft must cut a batch.
fn max_traces_json_writes_exactly_n_lines() {
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::MAX_TRACES_JSON),
        "-o",
        "json",
    ];
    let mut ipft = Ipft::start(&[&args[..], &["--max-traces", "3"]].concat());
    let _sinks = send_until_exit(&mut ipft, marks::MAX_TRACES_JSON);
    let out = ipft.wait_exit();

    assert_eq!(out.code(), Some(0), "{out}");
    let events = parse_json(&out.stdout);
    assert_eq!(events.len(), 3, "exactly --max-traces lines\n{out}");
    let first = &events[0];
    let why = "the first 3 events of the first datagram";
    assert_eq!(first.function, UDP_PATH[0], "{why}\n{out}");
    let same = events.iter().all(|e| e.packet_id == first.packet_id);
    assert!(same, "{why}\n{out}");
}

/// 7 events: one datagram and part of the next.
fn max_traces_table_holds_exactly_n_rows() {
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::MAX_TRACES_TABLE),
        "--max-traces",
        "7",
    ];
    let mut ipft = Ipft::start(&args);
    let _sinks = send_until_exit(&mut ipft, marks::MAX_TRACES_TABLE);
    let out = ipft.wait_exit();

    let packets = parse_table(&out.stdout);
    assert_eq!(checks::row_count(&packets), 7, "{out}");
    checks::clean_exit(&out, 7);
}

/// json goes to the file as events arrive, not at exit; stdout stays empty.
fn json_output_file_fills_while_ipft_runs() {
    let scratch = Scratch::new("json-file");
    let path = scratch.join("trace.json");
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::OUTPUT_JSON_FILE),
        "-o",
        "json",
    ];
    let file_args = ["--output-file", path.to_str().unwrap()];
    let mut ipft = Ipft::start(&[&args[..], &file_args].concat());
    let sent = 2;
    let _sinks = packets::send_datagrams(&packets::sender(Some(marks::OUTPUT_JSON_FILE)), sent);
    let want = sent * UDP_PATH.len();
    let lines = || fs::read_to_string(&path).map_or(0, |s| s.matches('\n').count());
    let streamed = poll_until(POLL_TIMEOUT, || lines() >= want);
    let running = ipft.try_exit(Duration::ZERO).is_none();
    let out = ipft.stop(libc::SIGINT);

    assert!(streamed && running, "json lines while running\n{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout, "", "the output went to the file\n{out}");
    let text = fs::read_to_string(&path).unwrap();
    let groups = parse_json_packets(&text);
    assert_eq!(groups.len(), sent, "{text}\n{out}");
}

/// The table is written to a temporary file and renamed at exit: the path
/// never holds half a table, and nothing else is left in the directory.
fn aggregate_output_file_appears_at_exit_in_one_piece() {
    let scratch = Scratch::new("table-file");
    let path = scratch.join("trace.txt");
    let args = ["-b", "tracepoint", "-m", &hex(marks::OUTPUT_TABLE_FILE)];
    let ipft = Ipft::start(&[&args[..], &["--output-file", path.to_str().unwrap()]].concat());
    let sent = 3;
    let sinks = packets::send_datagrams(&packets::sender(Some(marks::OUTPUT_TABLE_FILE)), sent);
    let early = path.exists();
    let out = ipft.stop(libc::SIGINT);
    drop(sinks);

    assert!(!early, "the table file exists before ipft exits\n{out}");
    assert_eq!(out.stdout, "", "the table went to the file\n{out}");
    assert_eq!(
        scratch.entries(),
        ["trace.txt"],
        "a temporary file left\n{out}"
    );
    let table = fs::read_to_string(&path).unwrap();
    let packets = parse_table(&table);
    assert_eq!(packets.len(), sent, "{table}\n{out}");
    checks::packets(&packets, UDP_PATH, 0, u64::MAX, &out);
    checks::clean_exit(&out, checks::row_count(&packets));
}

fn existing_output_file_is_replaced_only_with_force() {
    let scratch = Scratch::new("force");
    let path = scratch.join("old.txt");
    let file = path.to_str().unwrap();
    let mark = hex(marks::OUTPUT_FORCE);
    fs::write(&path, "keep me\n").unwrap();
    for output in ["aggregate", "json"] {
        let out = run(&["-m", &mark, "-o", output, "--output-file", file]);
        assert_eq!(out.code(), Some(2), "a usage error\n{out}");
        assert!(out.stderr.contains(file), "name the file\n{out}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me\n", "{out}");
    }

    let forced = [
        "-b",
        "tracepoint",
        "-m",
        &mark,
        "--force",
        "--output-file",
        file,
        "--",
        "true",
    ];
    let out = run(&forced);
    assert_eq!(out.code(), Some(0), "{out}");
    let table = fs::read_to_string(&path).unwrap();
    assert!(parse_table(&table).is_empty(), "an empty table\n{table}");
    assert_eq!(scratch.entries(), ["old.txt"], "{out}");
}

/// The ready file appears once every program is attached (it holds ipft's
/// pid), is there when `Trace ready!` is printed, and is gone after exit.
fn ready_file_exists_exactly_while_ready() {
    let scratch = Scratch::new("ready");
    let path = scratch.join("ready");
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::READY_FILE),
        "--ready-file",
    ];
    let mut ipft = Ipft::spawn(&[&args[..], &[path.to_str().unwrap()]].concat());
    let links = links_when_signalled(&ipft, || path.exists());
    ipft.wait_ready();
    let content = fs::read_to_string(&path);
    let pid = ipft.pid();
    let out = ipft.stop(libc::SIGINT);

    assert_eq!(content.ok(), Some(format!("{pid}\n")), "{out}");
    let succeeded = parse::attach(&out.stderr).unwrap().succeeded;
    let why = "ready before every tracepoint was attached";
    assert_eq!(links as u64, succeeded, "{why}\n{out}");
    assert!(!path.exists(), "the ready file outlives ipft\n{out}");
    checks::clean_exit(&out, 0);
}

/// ipftrace2's probe server: refused while attaching, accepted (and closed
/// at once) when ready, on 127.0.0.1 only when given just a port.
fn probe_server_accepts_once_ready_on_loopback_only() {
    let port = scripting::free_port();
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::PROBE_SERVER),
        "--enable-probe-server",
    ];
    let port_arg = port.to_string();
    let mut ipft = Ipft::spawn(&[&args[..], &["--probe-server-port", &port_arg]].concat());
    let links = links_when_signalled(&ipft, || scripting::connects(port));
    ipft.wait_ready();
    let closed_at_once = scripting::accepted_and_closed(port);
    let listening = scripting::listening_on(port);
    let out = ipft.stop(libc::SIGINT);

    let succeeded = parse::attach(&out.stderr).unwrap().succeeded;
    let why = "accepting before every tracepoint was attached";
    assert_eq!(links as u64, succeeded, "{why}\n{out}");
    assert!(closed_at_once, "a connection is accepted and closed\n{out}");
    assert_eq!(listening, ["0100007F"], "listen on 127.0.0.1 only\n{out}");
    assert!(
        !scripting::connects(port),
        "still listening after exit\n{out}"
    );
    checks::clean_exit(&out, 0);
}

/// Exit 1 with one sentence when tracing cannot start.
fn runtime_failures_exit_1_with_one_sentence() {
    let mark = hex(marks::RUNTIME_FAILURE);
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let in_use = ["--enable-probe-server", "--probe-server-port", &port];
    let out = run(&[&["-b", "tracepoint", "-m", mark.as_str()][..], &in_use].concat());
    assert_one_sentence_failure(&out, &port);

    let nowhere = "/nonexistent-ipft-dir/trace.json";
    let out = run(&[
        "-b",
        "tracepoint",
        "-m",
        &mark,
        "-o",
        "json",
        "--output-file",
        nowhere,
    ]);
    assert_one_sentence_failure(&out, nowhere);
}

fn assert_one_sentence_failure(out: &Output, names: &str) {
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(!out.stderr.contains("Trace ready!"), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    let last = out.stderr_lines().pop().unwrap_or_default();
    assert!(
        last.starts_with("ipft: ") && last.contains(names),
        "the last line says what failed, naming {names}\n{out}"
    );
}

fn usage_errors_exit_2() {
    let bad: [&[&str]; 7] = [
        &["--force"],
        &["--duration", "0"],
        &["--duration", "soon"],
        &["--max-traces", "0"],
        &["--probe-server-port", "nope"],
        &["--field", "bogus"],
        &["--generate", "bogus"],
    ];
    for args in bad {
        let out = run(&[&["-m", "1"][..], args].concat());
        assert_eq!(out.code(), Some(2), "`ipft -m 1 {}`\n{out}", args.join(" "));
        assert!(out.stderr.contains("error"), "{out}");
    }
}

/// `-l -o json`: one object per line with exactly these keys, the same
/// tracepoints BTF has.
fn list_as_json_lines() {
    let out = run(&["-l", "-b", "tracepoint", "-o", "json"]);
    assert_eq!(out.code(), Some(0), "{out}");
    let address = Regex::new("^0x[0-9a-f]{16}$").unwrap();
    let mut listed = Vec::new();
    for line in out.stdout.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{out}"));
        let object = value.as_object().unwrap_or_else(|| panic!("{line}"));
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["address", "module", "name", "skb_position"],
            "{line}"
        );
        assert!(
            address.is_match(value["address"].as_str().unwrap()),
            "{line}"
        );
        let name = value["name"].as_str().unwrap().to_string();
        assert_eq!(value["module"], "vmlinux", "{line}");
        listed.push((name, value["skb_position"].as_u64().unwrap() as u32));
    }
    listed.sort();
    assert_eq!(listed, kernel::skb_tracepoints(), "{out}");
}

/// In a log (stderr a pipe): plain lines, no `\r`, no ANSI escapes, in
/// either output mode and in errors.
fn stderr_off_a_terminal_is_plain() {
    let mark = hex(marks::PLAIN_STDERR);
    let ping = ping_cmd(marks::PLAIN_STDERR);
    let runs = [
        run(&["-b", "tracepoint", "-m", &mark, "--", "sh", "-c", &ping]),
        run(&[
            "-b",
            "tracepoint",
            "-m",
            &mark,
            "-o",
            "json",
            "--",
            "sh",
            "-c",
            &ping,
        ]),
        run(&[
            "-b",
            "tracepoint",
            "-m",
            &mark,
            "-r",
            "no_such_tracepoint_xyz",
        ]),
    ];
    for out in &runs {
        assert!(!out.stderr.is_empty(), "{out}");
        assert!(!out.stderr.contains('\r'), "\\r in a log\n{out}");
        assert!(!out.stderr.contains('\x1b'), "escape in a log\n{out}");
    }
    let rows = checks::row_count(&parse_table(&runs[0].stdout));
    let got = format!("\nGot {rows} traces\n");
    assert!(rows > 0 && runs[0].stderr.contains(&got), "{}", runs[0]);
}

/// On a terminal, progress lines are redrawn in place with `\r`.
fn progress_lines_use_cr_on_a_terminal() {
    let tty = Setup {
        stderr_tty: true,
        ..Setup::default()
    };
    let ping = ping_cmd(marks::TTY_CR);
    let args = [
        "-b",
        "tracepoint",
        "-m",
        &hex(marks::TTY_CR),
        "--",
        "sh",
        "-c",
        &ping,
    ];
    let out = Ipft::spawn_with(&args, tty).wait_exit();

    assert_eq!(out.code(), Some(0), "{out}");
    let rows = checks::row_count(&parse_table(&out.stdout));
    let redrawn = |text: &str| format!(r"\r(\x1b\[[0-9;]*[A-Za-z])*{text}");
    for line in [
        redrawn(r"Attaching program \(total"),
        redrawn(&format!("Got {rows} traces")),
    ] {
        let found = Regex::new(&line).unwrap().is_match(&out.stderr);
        assert!(found, "no {line:?} on the terminal\n{out}");
    }
}

/// ipft on a terminal, through `script`, with `NO_COLOR` set or unset.
fn on_a_terminal(mark: u32, no_color: Option<&str>) -> Output {
    let ipft = format!(
        "'{}' -b tracepoint -m {} -- true",
        ipft_bin().display(),
        hex(mark)
    );
    let mut script = Command::new("script");
    script.args(["-qfec", &ipft, "/dev/null"]);
    match no_color {
        Some(value) => script.env("NO_COLOR", value),
        None => script.env_remove("NO_COLOR"),
    };
    let out = run_bounded(&mut script);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("Trace ready!"), "{out}");
    out
}

/// https://no-color.org: NO_COLOR (non-empty) turns colour off on a
/// terminal. Only colour (SGR, `ESC[…m`): the erase-line `ESC[K` of the
/// in-place progress lines is not colour.
fn no_color_turns_colour_off_on_a_terminal() {
    let sgr = Regex::new(r"\x1b\[[0-9;]*m").unwrap();
    let coloured = on_a_terminal(marks::NO_COLOR, None);
    assert!(
        sgr.is_match(&coloured.stdout),
        "colour by default\n{coloured}"
    );
    let plain = on_a_terminal(marks::NO_COLOR, Some("1"));
    assert!(!sgr.is_match(&plain.stdout), "NO_COLOR=1\n{plain}");
}

fn generate_man_page_and_completions() {
    let man = run(&["--generate", "man"]);
    assert_eq!(man.code(), Some(0), "{man}");
    assert!(man.stdout.contains(".TH ipft 1"), "a roff man page\n{man}");
    assert!(man.stdout.contains(r"\-\-mark"), "{man}");
    // fish spells long options `-l mark`.
    for (shell, mention) in [("bash", "--mark"), ("zsh", "--mark"), ("fish", "-l mark")] {
        let out = run(&["--generate", &format!("complete-{shell}")]);
        assert_eq!(out.code(), Some(0), "{out}");
        assert!(out.stdout.contains(mention), "{shell}: {mention}\n{out}");
    }
}

/// The shell block under "## Use in CI" in the README, verbatim.
fn readme_ci_block() -> String {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Use in CI")
        .nth(1)
        .expect("a `Use in CI` section");
    let mut block = String::new();
    for line in section.lines().skip_while(|l| !l.starts_with("    ")) {
        match line.strip_prefix("    ") {
            Some(code) => block.push_str(&format!("{code}\n")),
            None if line.is_empty() => {}
            None => break,
        }
    }
    block
}

/// Runs the README's CI block with its mark swapped for this test's, in a
/// private network and mount namespace (so `client`, `veth0` and 10.0.0.0/24
/// are this test's alone), `set -e`, in a scratch directory, with ipft on
/// PATH. Returns the shell's status and trace.json.
fn run_readme_ci(block: &str, scratch: &Scratch) -> (Output, String) {
    let script = format!(
        "set -e\nmount -t tmpfs ipft-test /run/netns\ncd '{}'\n{block}",
        scratch.path().display()
    );
    fs::create_dir_all("/run/netns").unwrap();
    let dir = ipft_bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths([dir].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut unshare = Command::new("unshare");
    unshare.args(["--mount", "--net", "sh", "-c", &script]);
    let out = run_bounded(unshare.env("PATH", path));
    let trace = fs::read_to_string(scratch.join("trace.json")).unwrap_or_default();
    (out, trace)
}

/// The README's "Use in CI" example works as written (jq included), with
/// the backend `auto` picks on this kernel, and its check means something:
/// without `--track` the same check fails.
fn readme_ci_example_runs_as_written() {
    let block = readme_ci_block();
    for word in ["0x55555555", "1431655765", "--track", "\njq "] {
        assert!(block.contains(word), "the README example changed:\n{block}");
    }
    let mark = marks::README_CI;
    let block = block
        .replace("0x55555555", &hex(mark))
        .replace("1431655765", &mark.to_string());

    let scratch = Scratch::new("readme-ci");
    let (out, trace) = run_readme_ci(&block, &scratch);
    assert_eq!(out.code(), Some(0), "the README example\n{block}\n{out}");
    let received = parse_json(&trace)
        .iter()
        .any(|e| e.function.contains("netif_receive_skb"));
    assert!(received, "trace.json:\n{trace}\n{out}");

    let untracked = Scratch::new("readme-ci-untracked");
    let (out, trace) = run_readme_ci(&block.replace(" --track", ""), &untracked);
    assert!(!trace.is_empty(), "ipft traced the request\n{out}");
    assert_ne!(out.code(), Some(0), "without --track jq must fail\n{out}");
}

ipft_tests::tests! {
    command_mode_runs_once_ready_and_exits_with_the_commands_status,
    command_mode_with_json,
    command_that_cannot_run_exits_127_or_126,
    command_killed_by_a_signal_exits_128_plus_n,
    duration_stops_by_itself,
    max_traces_json_writes_exactly_n_lines,
    max_traces_table_holds_exactly_n_rows,
    json_output_file_fills_while_ipft_runs,
    aggregate_output_file_appears_at_exit_in_one_piece,
    existing_output_file_is_replaced_only_with_force,
    ready_file_exists_exactly_while_ready,
    probe_server_accepts_once_ready_on_loopback_only,
    runtime_failures_exit_1_with_one_sentence,
    usage_errors_exit_2,
    list_as_json_lines,
    stderr_off_a_terminal_is_plain,
    progress_lines_use_cr_on_a_terminal,
    no_color_turns_colour_off_on_a_terminal,
    generate_man_page_and_completions,
    readme_ci_example_runs_as_written,
}
