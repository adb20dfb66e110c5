//! The command line: help, version, `-l`, and every error path. Usage errors
//! exit 2, runtime errors exit 1 with one clear sentence (no error chain).
use ipft_tests::{capabilities, kernel, marks, needs, run, Ipft, Output, Setup};
use regex::Regex;

fn assert_usage_error(args: &[&str], bad: &str) {
    let out = run(args);
    assert_eq!(
        out.code(),
        Some(2),
        "`ipft {}` is a usage error\n{out}",
        args.join(" ")
    );
    assert!(is_usage_style(&out.stderr), "a usage-style message\n{out}");
    assert!(
        out.stderr.contains(bad),
        "the message must name {bad:?}\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

/// An error that points at the usage, as clap's are: `Usage: ...` or
/// `For more information, try '--help'`.
fn is_usage_style(stderr: &str) -> bool {
    stderr.contains("error") && (stderr.contains("Usage") || stderr.contains("--help"))
}

/// Exit 1, no panic, no `Caused by:` chain, and at most `max_lines` lines
/// (the `auto` backend line may precede the error).
fn assert_one_sentence_error(out: &Output, max_lines: usize) {
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert!(
        !out.stderr.contains("Caused by"),
        "one sentence, not an error chain\n{out}"
    );
    assert!(!out.stderr.contains("Trace ready!"), "{out}");
    let lines = out.stderr_lines();
    assert!(
        (1..=max_lines).contains(&lines.len()),
        "want 1..={max_lines} stderr lines\n{out}"
    );
}

fn help_exits_0() {
    for flag in ["-h", "--help"] {
        let out = run(&[flag]);
        assert_eq!(out.code(), Some(0), "{out}");
        for option in [
            "--mark",
            "--mask",
            "--backend",
            "--output",
            "--regex",
            "--module-regex",
            "--list",
        ] {
            assert!(
                out.stdout.contains(option),
                "help must describe {option}\n{out}"
            );
        }
        for option in ["--perf-page-count", "--perf-wakeup-events", "--verbose"] {
            assert!(
                out.stdout.contains(option),
                "help must describe {option}\n{out}"
            );
        }
    }
}

fn version_exits_0() {
    for flag in ["-V", "--version"] {
        let out = run(&[flag]);
        assert_eq!(out.code(), Some(0), "{out}");
        assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out}");
    }
}

fn mark_is_required() {
    let out = run(&[]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(is_usage_style(&out.stderr), "{out}");
    assert!(
        out.stderr.contains("-m") || out.stderr.contains("--mark"),
        "name the missing option\n{out}"
    );
}

fn bad_values_are_usage_errors() {
    assert_usage_error(&["-m", "zzz"], "zzz");
    // Mark 0 would match every unmarked packet (ipftrace2 refuses it too).
    assert_usage_error(&["-m", "0"], "0");
    assert_usage_error(&["-m", "0x1ffffffff"], "0x1ffffffff");
    assert_usage_error(&["-m", "4294967296"], "4294967296");
    // A leading 0 means octal, and 8 is no octal digit.
    assert_usage_error(&["-m", "08"], "08");
    assert_usage_error(&["-m", "1", "--mask", "nope"], "nope");
    assert_usage_error(&["-m", "1", "--mask", "0x1ffffffff"], "0x1ffffffff");
    assert_usage_error(&["-m", "1", "-r", "("], "(");
    assert_usage_error(&["-m", "1", "--module-regex", "[z-a]"], "[z-a]");
    assert_usage_error(&["-m", "1", "-b", "bogus"], "bogus");
    assert_usage_error(&["-m", "1", "-t", "bogus"], "bogus");
    assert_usage_error(&["-m", "1", "-o", "bogus"], "bogus");
    assert_usage_error(&["-m", "1", "--perf-page-count", "many"], "many");
    assert_usage_error(&["-m", "1", "--no-such-option"], "--no-such-option");
}

fn nothing_left_after_filtering_is_an_error() {
    let out = run(&["-m", "1", "-r", "no_such_function_xyz"]);
    assert_one_sentence_error(&out, 2);
    let out = run(&["-m", "1", "--module-regex", "no_such_module_xyz"]);
    assert_one_sentence_error(&out, 2);
}

/// A backend this kernel does not allow (see `capabilities`) is refused at
/// once with the reason, not with a chain of aya errors or after a long
/// retry. robust.rs pins the exact words.
fn unavailable_backends_fail_with_one_sentence() {
    let kernel = capabilities();
    let causes: [(&str, &[&str]); 4] = [
        ("kprobe", &["kprobe"]),
        ("ftrace", &["fentry", "ftrace"]),
        ("fentry", &["fentry", "ftrace"]),
        ("kprobe-multi", &["fprobe", "kprobe-multi"]),
    ];
    let lacking: Vec<_> = causes.iter().filter(|(b, _)| !kernel.has(b)).collect();
    assert!(!lacking.is_empty(), "needs::a_backend_to_refuse found one");
    for (backend, words) in lacking {
        let out = run(&["-m", "1", "-b", backend]);
        assert_one_sentence_error(&out, 1);
        let said = out.stderr.to_lowercase();
        assert!(
            words.iter().any(|w| said.contains(w)),
            "`-b {backend}`: name the cause\n{out}"
        );
    }
}

/// Without root (uid nobody: no CAP_BPF, no CAP_PERFMON) ipft says so.
fn not_root_is_an_error() {
    let args = ["-m", &format!("{:#x}", marks::NOT_ROOT)];
    let out = Ipft::spawn_with(
        &args,
        Setup {
            uid: Some(65534),
            ..Setup::default()
        },
    )
    .wait_exit();
    assert_one_sentence_error(&out, 2);
    let why = Regex::new(r"(?i)root|cap_bpf|permission|privilege").unwrap();
    assert!(
        why.is_match(&out.stderr),
        "say that root (CAP_BPF) is needed\n{out}"
    );
}

/// `-l` rows, whatever the table style: NAME MODULE ADDRESS SKB-POSITION.
fn listed(out: &Output) -> Vec<(String, String, u32)> {
    out.stdout
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || "|│┃".contains(c))
                .filter(|c| !c.is_empty())
                .collect();
            let [name, module, address, pos] = cells[..] else {
                return None;
            };
            let is_address = address.starts_with("0x") || address.parse::<u64>().is_ok();
            (is_address && pos.parse::<u32>().is_ok())
                .then(|| (name.to_string(), module.to_string(), pos.parse().unwrap()))
        })
        .collect()
}

fn assert_lists(args: &[&str], keep: impl Fn(&str) -> bool) {
    let out = run(args);
    assert_eq!(out.code(), Some(0), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    for column in ["NAME", "MODULE", "ADDRESS"] {
        assert!(
            all.contains(column),
            "the list needs a {column} column\n{out}"
        );
    }
    let mut rows = listed(&out);
    rows.sort();
    let mut want: Vec<(String, String, u32)> = kernel::skb_tracepoints()
        .into_iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, pos)| (name, "vmlinux".to_string(), pos))
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(
        rows,
        want,
        "`ipft {}`: every skb tracepoint (from BTF) with its skb position\n{out}",
        args.join(" ")
    );
}

fn list_shows_every_skb_tracepoint() {
    assert_lists(&["-l", "-b", "tracepoint"], |_| true);
    let vmlinux = ["--list", "-b", "tracepoint", "--module-regex", "vmlinux"];
    assert_lists(&vmlinux, |_| true);
}

fn list_honours_regex_unanchored() {
    let tracepoints = ["-l", "-b", "tracepoint", "-r"];
    assert_lists(&[&tracepoints[..], &["dev_"]].concat(), |name| {
        name.contains("dev_")
    });
    assert_lists(&[&tracepoints[..], &["^netif_rx"]].concat(), |name| {
        name.starts_with("netif_rx")
    });
}

ipft_tests::tests! {
    help_exits_0,
    version_exits_0,
    mark_is_required,
    bad_values_are_usage_errors,
    nothing_left_after_filtering_is_an_error,
    unavailable_backends_fail_with_one_sentence: needs::a_backend_to_refuse,
    not_root_is_an_error,
    list_shows_every_skb_tracepoint,
    list_honours_regex_unanchored,
}
