//! ipft under bad input and bad endings: every refusal is one exact
//! message with its exit code, and however a run ends (SIGINT while
//! attaching, a panic, SIGKILL) its programs leave the kernel and the next
//! run works. cli.rs checks that bad values are refused; this file pins
//! down the exact words, for backends from what this kernel allows (see
//! `capabilities`). The endings are those of the tracepoint backend, which
//! every kernel has.
use std::{fs, path::PathBuf};

use ipft_tests::{
    capabilities, kernel, marks, needs,
    packets::{self, UDP_PATH},
    parse::parse_table,
    run, teardown, Ipft, Output, Setup,
};

fn hex(mark: u32) -> String {
    format!("{mark:#x}")
}

/// Exit `code`, and stderr is exactly `lines` (no panic, no error chain).
fn assert_says(args: &[&str], code: i32, lines: &[&str]) {
    let out = run(args);
    assert_exact(&out, args, code, lines);
}

fn assert_exact(out: &Output, args: &[&str], code: i32, lines: &[&str]) {
    let cmd = format!("ipft {}", args.join(" "));
    assert_eq!(out.code(), Some(code), "`{cmd}`: exit code\n{out}");
    assert_eq!(out.stderr_lines(), lines, "`{cmd}`: stderr\n{out}");
}

/// A usage error: exit 2, `first` as clap's first line, then the hint.
fn assert_usage(args: &[&str], first: &str) {
    let out = run(args);
    let cmd = format!("ipft {}", args.join(" "));
    assert_eq!(out.code(), Some(2), "`{cmd}`: exit code\n{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.first().copied(), Some(first), "`{cmd}`\n{out}");
    assert_eq!(
        lines.last().copied(),
        Some("For more information, try '--help'."),
        "`{cmd}`\n{out}"
    );
}

fn bad_numbers_are_usage_errors() {
    let not_a_number = "is not a number (use 0x hex, 0 octal, or decimal)";
    assert_usage(
        &["-m", "zzz"],
        &format!("error: invalid value 'zzz' for '--mark <MARK>': `zzz` {not_a_number}"),
    );
    assert_usage(
        &["-m", "4294967296"],
        "error: invalid value '4294967296' for '--mark <MARK>': `4294967296` does not fit in 32 bits",
    );
    assert_usage(
        &["-m", "1", "--mask", "0x"],
        &format!("error: invalid value '0x' for '--mask <MASK>': `0x` {not_a_number}"),
    );
    assert_usage(
        &["-m", "1", "--mask", "0x100000000"],
        "error: invalid value '0x100000000' for '--mask <MASK>': `0x100000000` does not fit in 32 bits",
    );
    assert_usage(
        &["-m", "1", "--max-events", "0"],
        "error: invalid value '0' for '--max-events <N>': 0 is not in 1..18446744073709551615",
    );
}

/// `(mark & mask) == 0` would match every unmarked packet: refused (as
/// ipftrace2 refuses mark 0), whether the mark is 0 or the mask hides it.
fn a_mark_that_is_zero_under_its_mask_is_refused() {
    assert_usage(
        &["-m", "0"],
        "error: mark 0 would trace every unmarked packet: choose a non-zero mark",
    );
    assert_usage(
        &["-m", "0x100", "--mask", "0xff"],
        "error: mark 0x100 & mask 0xff is 0, which would trace every unmarked packet: choose a mark with bits inside the mask",
    );
}

fn unknown_choices_are_usage_errors() {
    assert_usage(
        &["-m", "1", "-b", "bogus"],
        "error: invalid value 'bogus' for '--backend <BACKEND>'",
    );
    assert_usage(
        &["-m", "1", "-t", "bogus"],
        "error: invalid value 'bogus' for '--tracer <TRACER>'",
    );
    assert_usage(
        &["-m", "1", "-o", "bogus"],
        "error: invalid value 'bogus' for '--output <OUTPUT>'",
    );
    assert_usage(
        &["-m", "1", "-r", "("],
        "error: invalid value '(' for '--regex <REGEX>': invalid regex: regex parse error:",
    );
}

/// `-b auto` says which backend it chose (the one this kernel allows, see
/// `capabilities`) before an error found later.
fn a_regex_that_matches_nothing_is_one_sentence() {
    let kernel = capabilities();
    let what = match kernel.auto_backend() {
        "tracepoint" => "tracepoint",
        _ => "function",
    };
    let said = format!("ipft: no {what} matches the given -r/--module-regex (see ipft -l)");
    let args = ["-m", "1", "-r", "no_such_function_xyz"];
    assert_says(&args, 1, &[&kernel.auto_line(), &said]);
}

/// Each backend this kernel does not allow is refused at once, with the
/// kernel's reason and a backend that works here.
fn backends_this_kernel_lacks_are_one_sentence() {
    let kernel = capabilities();
    let lacking: Vec<(&str, String)> = needs::REFUSABLE
        .into_iter()
        .filter_map(|b| kernel.refusal(b).map(|said| (b, said)))
        .collect();
    assert!(!lacking.is_empty(), "needs::a_backend_to_refuse found one");
    for (backend, said) in lacking {
        assert_says(&["-m", "1", "-b", backend], 1, &[&said]);
    }
}

/// function_graph needs returns: tracepoints have none, and without `-b`
/// it is refused where no function backend works (backends.rs traces with
/// one where one does).
fn function_graph_needs_a_backend_that_sees_returns() {
    let mut cases: Vec<(&[&str], String)> = vec![(
        &["-b", "tracepoint"],
        "ipft: function_graph needs function returns, which tracepoints do not have: use -b kprobe-multi, -b kprobe or -b ftrace".into(),
    )];
    if let Some(said) = capabilities().graph_refusal() {
        cases.push((&[], said));
    }
    for (backend, said) in cases {
        let args = [&["-m", "1", "-t", "function_graph"], backend].concat();
        assert_says(&args, 1, &[&said]);
    }
}

fn not_root_is_one_exact_sentence() {
    let args = ["-m", "1"];
    let nobody = Setup {
        uid: Some(65534),
        ..Setup::default()
    };
    let out = Ipft::spawn_with(&args, nobody).wait_exit();
    assert_exact(
        &out,
        &args,
        1,
        &["ipft: root is needed (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load BPF programs: run ipft with sudo"],
    );
}

/// A scratch directory for BTF copies, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ipft-robust-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A BTF directory whose `vmlinux` holds `bytes`.
    fn btf(&self, case: &str, bytes: &[u8]) -> String {
        let dir = self.0.join(case);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vmlinux"), bytes).unwrap();
        dir.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// BTF missing, unreadable, truncated or corrupt (through the hidden
/// `--btf-dir`): one sentence each, exit 1, never a panic.
fn damaged_btf_is_one_sentence() {
    let scratch = Scratch::new("btf");
    let real = fs::read("/sys/kernel/btf/vmlinux").unwrap();
    let missing = scratch.0.join("missing").display().to_string();
    let unreadable = scratch.0.join("unreadable");
    fs::create_dir_all(unreadable.join("vmlinux")).unwrap(); // a directory
    let unreadable = unreadable.display().to_string();
    let mut flipped = real.clone();
    flipped[0] ^= 0xff; // the magic number
    let cases = [
        (
            missing.clone(),
            "the kernel has no BTF at {}: ipft needs a kernel built with CONFIG_DEBUG_INFO_BTF",
        ),
        (
            unreadable.clone(),
            "cannot read the kernel's BTF at {} (Is a directory (os error 21)): ipft needs the kernel's BTF to find what it can trace",
        ),
        (
            scratch.btf("empty", &[]),
            "the kernel's BTF at {} is truncated: ipft needs the kernel's BTF to find what it can trace",
        ),
        (
            scratch.btf("half", &real[..real.len() / 2]),
            "the kernel's BTF at {} is truncated: ipft needs the kernel's BTF to find what it can trace",
        ),
        (
            scratch.btf("magic", &flipped),
            "the kernel's BTF at {} is corrupt (Invalid BTF magic: 0xeb60): ipft needs the kernel's BTF to find what it can trace",
        ),
    ];
    for (dir, said) in cases {
        let vmlinux = format!("{dir}/vmlinux");
        let said = format!("ipft: {}", said.replace("{}", &vmlinux));
        assert_says(&["-m", "1", "--btf-dir", &dir], 1, &[&said]);
    }
}

fn an_output_file_that_cannot_be_created_is_one_sentence() {
    for output in ["aggregate", "json"] {
        for (path, why) in [
            (
                "/nonexistent-ipft-dir/out",
                "No such file or directory (os error 2)",
            ),
            ("/sys/ipft-out", "Permission denied (os error 13)"),
        ] {
            let said = format!(
                "ipft: cannot create the output file {path} ({why}): choose a writable --output-file"
            );
            let args = ["-m", "1", "-o", output, "--output-file", path];
            assert_says(&args, 1, &[&capabilities().auto_line(), &said]);
        }
    }
}

fn a_command_that_cannot_run_gets_the_shell_codes() {
    assert_says(
        &["-m", "1", "--", "no-such-command-ipft"],
        127,
        &["ipft: command not found: no-such-command-ipft"],
    );
    let scratch = Scratch::new("command");
    let plain = scratch.0.join("not-executable");
    fs::write(&plain, "data").unwrap();
    let plain = plain.display().to_string();
    assert_says(
        &["-m", "1", "--", &plain],
        126,
        &[&format!("ipft: command is not executable: {plain}")],
    );
}

/// Attaching is slowed by a test hook so that SIGINT surely lands in it:
/// ipft stops attaching, says so, exits 130, and keeps nothing attached.
fn sigint_while_attaching_leaves_nothing() {
    let mark = marks::ATTACH_INTERRUPTED;
    let slow = Setup {
        hook: Some("slow-attach"),
        ..Setup::default()
    };
    let args = ["-b", "tracepoint", "-m", &hex(mark)];
    let ipft = Ipft::spawn_with(&args, slow);
    let held = teardown::wait_attaching(ipft.pid());
    let out = ipft.stop(libc::SIGINT);
    assert_eq!(out.code(), Some(130), "{out}");
    let lines = out.stderr_lines();
    assert_eq!(
        lines.last().copied(),
        Some("Interrupted while attaching: nothing was traced"),
        "{out}"
    );
    assert!(!out.stderr.contains("Trace ready!"), "{out}");
    assert!(out.stdout.is_empty(), "nothing was traced\n{out}");
    teardown::assert_released(&held, &out);
    teardown::assert_next_run_works(mark);
}

/// On a terminal the attach line is redrawn in place; an interruption
/// must not leave the cursor after it.
fn sigint_while_attaching_on_a_tty_ends_the_line() {
    let setup = Setup {
        hook: Some("slow-attach"),
        stderr_tty: true,
        ..Setup::default()
    };
    let ipft = Ipft::spawn_with(
        &[
            "-b",
            "tracepoint",
            "-m",
            &hex(marks::ATTACH_INTERRUPTED_TTY),
        ],
        setup,
    );
    let held = teardown::wait_attaching(ipft.pid());
    let out = ipft.stop(libc::SIGINT);
    assert_eq!(out.code(), Some(130), "{out}");
    assert!(
        out.stderr
            .ends_with("\nInterrupted while attaching: nothing was traced\n"),
        "the message on a line of its own, and the terminal on a fresh line: {:?}",
        out.stderr
    );
    teardown::assert_released(&held, &out);
}

/// SIGTERM on a terminal, after `Got N traces` was redrawn in place: the
/// terminal is left at the start of a line.
fn sigterm_on_a_tty_leaves_the_terminal_on_a_fresh_line() {
    let mark = marks::TERMINAL_LINE;
    let tty = Setup {
        stderr_tty: true,
        ..Setup::default()
    };
    let mut ipft = Ipft::spawn_with(&["-b", "tracepoint", "-m", &hex(mark)], tty);
    ipft.wait_ready();
    let _sinks = packets::send_datagrams(&packets::sender(Some(mark)), 2);
    let out = ipft.stop(libc::SIGTERM);
    assert_eq!(out.code(), Some(0), "{out}");
    // Then the closing summary of the packets' fates, on a line of its own.
    let end = regex::Regex::new(r"Got \d+ traces\n\d+ packets?: [^\n]*\n$").unwrap();
    assert!(
        end.is_match(&out.stderr),
        "ends with the final count, the fates and a newline: {:?}",
        out.stderr
    );
}

/// A panic while events flow (a test hook): the message on stderr, exit
/// 101, and the kernel drops ipft's programs as its fds close.
fn a_panic_releases_everything() {
    let mark = marks::PANIC;
    let hook = Setup {
        hook: Some("panic-on-event"),
        ..Setup::default()
    };
    let mut ipft = Ipft::spawn_with(&["-b", "tracepoint", "-m", &hex(mark)], hook);
    ipft.wait_ready();
    let held = kernel::programs_held_by(ipft.pid());
    let _sinks = packets::send_datagrams(&packets::sender(Some(mark)), 1);
    let out = ipft.wait_exit();
    assert_eq!(out.code(), Some(101), "a panic exits 101\n{out}");
    assert!(
        out.stderr
            .contains("IPFT_TEST_HOOK=panic-on-event: a panic on purpose"),
        "{out}"
    );
    teardown::assert_released(&held, &out);
    teardown::assert_next_run_works(mark);
}

fn sigkill_releases_everything() {
    let mark = marks::SIGKILL;
    let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(mark)]);
    let held = kernel::programs_held_by(ipft.pid());
    let _sinks = packets::send_datagrams(&packets::sender(Some(mark)), 1);
    let out = ipft.stop(libc::SIGKILL);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out}");
    teardown::assert_released(&held, &out);
    teardown::assert_next_run_works(mark);
}

/// SIGINT and SIGTERM while tracing release the programs (bpf_programs.rs
/// and trace.rs check that); the run after them works too.
fn the_run_after_sigint_and_sigterm_works() {
    let mark = marks::NEXT_RUN;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let ipft = Ipft::start(&["-b", "tracepoint", "-m", &hex(mark)]);
        let held = kernel::programs_held_by(ipft.pid());
        let out = ipft.stop(signal);
        assert_eq!(out.code(), Some(0), "{out}");
        teardown::assert_released(&held, &out);
        teardown::assert_next_run_works(mark);
    }
}

/// At a terminal, with many probes, a background process removes them so
/// the prompt comes back when the output ends (here forced by a test hook:
/// the tracepoints are few). The output is complete, nothing of
/// the user's stays open, and the probes are then gone.
fn probes_handed_to_the_background_are_removed() {
    let mark = marks::BACKGROUND;
    let setup = Setup {
        hook: Some("background-detach"),
        stderr_tty: true,
        ..Setup::default()
    };
    let mut ipft = Ipft::spawn_with(&["-b", "tracepoint", "-m", &hex(mark)], setup);
    ipft.wait_ready();
    let held = kernel::programs_held_by(ipft.pid());
    let _sinks = packets::send_datagrams(&packets::sender(Some(mark)), 1);
    let out = ipft.stop(libc::SIGINT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(parse_table(&out.stdout).len(), 1, "{out}");
    let said =
        regex::Regex::new(r"ipft: removing \d+ probes in the background \(pid \d+\)").unwrap();
    assert!(said.is_match(&out.stderr), "{out}");
    teardown::assert_released(&held, &out);
    teardown::assert_next_run_works(mark);
}

/// Two tracers at once, on different marks: each reports only its own
/// packets (`--field mark` shows the mark of every event).
fn two_tracers_see_only_their_own_packets() {
    let (a, b) = (marks::TWO_A, marks::TWO_B);
    let json = |mark: u32| {
        Ipft::start(&[
            "-b",
            "tracepoint",
            "-m",
            &hex(mark),
            "-o",
            "json",
            "--field",
            "mark",
        ])
    };
    let (tracer_a, tracer_b) = (json(a), json(b));
    let (sent_a, sent_b) = (3, 4);
    let mut sinks = Vec::new();
    for i in 0..sent_a.max(sent_b) {
        for (mark, sent) in [(a, sent_a), (b, sent_b)] {
            if i < sent {
                sinks.extend(packets::send_datagrams(&packets::sender(Some(mark)), 1));
            }
        }
        sinks.extend(packets::send_datagrams(&packets::sender(None), 1));
    }
    tracer_a.wait_for_stdout_lines(sent_a * UDP_PATH.len());
    tracer_b.wait_for_stdout_lines(sent_b * UDP_PATH.len());
    for (tracer, mark, sent) in [(tracer_a, a, sent_a), (tracer_b, b, sent_b)] {
        let out = tracer.stop(libc::SIGINT);
        assert_eq!(out.code(), Some(0), "{out}");
        let events: Vec<serde_json::Value> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let marks: Vec<&str> = events.iter().map(|e| e["mark"].as_str().unwrap()).collect();
        assert!(
            marks.iter().all(|&m| m == hex(mark)),
            "-m {mark:#x} saw marks {marks:?}\n{out}"
        );
        let mut packets: Vec<&str> = events
            .iter()
            .map(|e| e["packet_id"].as_str().unwrap())
            .collect();
        packets.sort();
        packets.dedup();
        assert_eq!(packets.len(), sent, "-m {mark:#x}: its packets\n{out}");
        assert!(events.len() >= sent * UDP_PATH.len(), "{out}");
    }
}

ipft_tests::tests! {
    bad_numbers_are_usage_errors,
    a_mark_that_is_zero_under_its_mask_is_refused,
    unknown_choices_are_usage_errors,
    a_regex_that_matches_nothing_is_one_sentence,
    backends_this_kernel_lacks_are_one_sentence: needs::a_backend_to_refuse,
    function_graph_needs_a_backend_that_sees_returns,
    not_root_is_one_exact_sentence,
    damaged_btf_is_one_sentence,
    an_output_file_that_cannot_be_created_is_one_sentence,
    a_command_that_cannot_run_gets_the_shell_codes,
    sigint_while_attaching_leaves_nothing,
    sigint_while_attaching_on_a_tty_ends_the_line,
    sigterm_on_a_tty_leaves_the_terminal_on_a_fresh_line,
    a_panic_releases_everything,
    sigkill_releases_everything,
    the_run_after_sigint_and_sigterm_works,
    probes_handed_to_the_background_are_removed,
    two_tracers_see_only_their_own_packets,
}
