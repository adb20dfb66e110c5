//! No ipft BPF program outlives its ipft, whichever backend loaded it.
//!
//! Other tests (and maybe a person) run ipft at the same time, so "no
//! program named like ipft's is loaded" would race with them. Two checks that
//! hold under any concurrency instead:
//! 1. the exact programs this run's ipft held (their ids, from its fdinfo)
//!    are gone once it exits;
//! 2. every loaded program named like ipft's is held by a live ipft process:
//!    nothing orphaned, by this run or any earlier one.
//!
//! It is its own test binary: cargo runs test binaries one at a time, in name
//! order, and stops at the first failing one, so this one runs first, where a
//! failure elsewhere cannot skip it. Both checks hold whatever runs
//! concurrently, so neither order nor a person's ipft elsewhere on the host
//! can make them flaky; the SIGTERM and closed-stdout tests check check 1 for
//! their own exit paths.
use ipft_tests::{capabilities, kernel, marks, packets, parse::parse_table, Ipft};

/// Each backend this kernel allows, on the one function (or tracepoint) a
/// ping's echo request ends in, so that even kprobe attaches in a moment.
fn programs_are_released_when_ipft_exits() {
    for backend in capabilities().backends() {
        release_after_one_packet(backend);
    }
    assert_eq!(
        orphans(),
        Vec::<(u32, String)>::new(),
        "ipft programs held by no ipft process"
    );
}

fn release_after_one_packet(backend: &str) {
    let mark = format!("{:#x}", marks::CLEANUP);
    let args = ["-b", backend, "-m", &mark, "-r", "^consume_skb$"];
    let ipft = Ipft::start(&args);
    let held = kernel::programs_held_by(ipft.pid());
    assert!(
        !held.is_empty(),
        "-b {backend}: a ready ipft holds its BPF programs\n{}",
        ipft.stderr()
    );
    // The orphan check below finds ipft's programs by name: make sure the
    // names it looks for are the ones ipft loads.
    let named: Vec<String> = kernel::loaded_programs()
        .into_iter()
        .filter(|(id, _)| held.contains(id))
        .map(|(_, name)| name)
        .collect();
    let known = named.iter().filter(|n| kernel::is_ipft_program(n)).count();
    assert!(
        known > 0,
        "-b {backend}: none of ipft's programs {named:?} has a known name"
    );
    packets::ping(marks::CLEANUP);
    let out = ipft.stop(libc::SIGINT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(parse_table(&out.stdout).len(), 1, "{out}");
    assert_eq!(
        kernel::wait_unloaded(&held),
        Vec::<u32>::new(),
        "programs outlived ipft\n{out}"
    );
}

/// ipft-named programs no live ipft holds, after waiting out the kernel's
/// asynchronous release of programs whose ipft just exited.
fn orphans() -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let held: Vec<u32> = kernel::ipft_processes()
            .into_iter()
            .flat_map(kernel::programs_held_by)
            .collect();
        let orphans: Vec<(u32, String)> = kernel::loaded_programs()
            .into_iter()
            .filter(|(id, name)| kernel::is_ipft_program(name) && !held.contains(id))
            .collect();
        if orphans.is_empty() || std::time::Instant::now() >= deadline {
            return orphans;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

ipft_tests::tests! {
    programs_are_released_when_ipft_exits,
}
