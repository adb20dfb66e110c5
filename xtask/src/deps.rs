//! Installs what the build and the tests need, idempotently.
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

const BPF_LINKER_VERSION: &str = "0.10.4";

/// Runs a command, failing with its name when it cannot start or fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Output of a command that must succeed, as a string.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// nightly's `rust-src` and `bpf-linker`, needed to build the eBPF crate.
pub fn ebpf_toolchain() -> Result<()> {
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the nightly toolchain is needed for the eBPF crate: install it with `rustup toolchain install nightly`")?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: installing rust-src for nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    let have =
        linker.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if !have {
        eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (about 2 minutes)");
        run(Command::new("cargo").args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--quiet",
        ]))?;
    }
    Ok(())
}

/// libpcap.a, which ipft links in to compile `-f` expressions
/// (ipft/build.rs): (a command the package installs, the package).
pub const LIBPCAP: (&str, &str) = ("pcap-config", "libpcap0.8-dev");

/// Debian packages, installed with apt-get when a listed command is missing.
/// Each entry is (command that proves the package is there, package).
pub fn debian(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(cmd, _)| !quiet_ok(Command::new("sh").args(["-c", &format!("command -v {cmd}")])))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    apt_update()?;
    for lock in DPKG_LOCKS {
        wait_for_lock(Path::new(lock), LOCK_WAIT)?;
    }
    run(Command::new("apt-get")
        .args(install_args(&missing))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null()))
}

/// What apt and dpkg hold while they change the system (an unattended
/// upgrade, another apt): fcntl write locks on these files.
const DPKG_LOCKS: &[&str] = &["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"];
/// What `apt-get update` holds.
const LISTS_LOCK: &str = "/var/lib/apt/lists/lock";
/// How long to wait for another package manager to finish.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// How often to look whether a lock was released.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// Refreshes apt's package lists, once no other apt holds them.
pub fn apt_update() -> Result<()> {
    // apt-get update fails at once on a held lock: DPkg::Lock::Timeout
    // makes only the dpkg locks wait.
    wait_for_lock(Path::new(LISTS_LOCK), LOCK_WAIT)?;
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .stdout(Stdio::null()))
}

/// `apt-get install` of `packages`, waiting for the dpkg locks (should one
/// be taken between [`wait_for_lock`] and apt taking it).
fn install_args(packages: &[&str]) -> Vec<String> {
    let timeout = format!("DPkg::Lock::Timeout={}", LOCK_WAIT.as_secs());
    let args = [
        "-o",
        &timeout,
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
    ];
    args.iter().chain(packages).map(|a| a.to_string()).collect()
}

/// Waits while another process holds a write lock on `path`, saying so on
/// stderr; fails once it has held it for `wait`.
fn wait_for_lock(path: &Path, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut waited = false;
    while let Some(pid) = lock_holder(path) {
        let holder = process_name(pid);
        if Instant::now() >= deadline {
            bail!(
                "{} is still locked by {holder} after {} s: let it finish (an unattended upgrade \
                 can take a while), then run this again",
                path.display(),
                wait.as_secs()
            );
        }
        if !waited {
            eprintln!(
                "xtask: waiting for {holder} to release {} (another package manager; up to {} s)",
                path.display(),
                wait.as_secs()
            );
            waited = true;
        }
        thread::sleep(LOCK_POLL);
    }
    if waited {
        eprintln!("xtask: {} released; going on", path.display());
    }
    Ok(())
}

/// The pid of a process holding a write lock on `path` (0 or less when
/// the kernel does not say, as for an open file description's lock), or
/// `None` when it is free or absent.
fn lock_holder(path: &Path) -> Option<i32> {
    let file = File::open(path).ok()?;
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_GETLK on an open fd fills the flock it is given; it takes
    // no lock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    (rc == 0 && lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

/// `process 1234 (unattended-upgr)`, or `another process`.
fn process_name(pid: i32) -> String {
    if pid <= 0 {
        return "another process".into();
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) => format!("process {pid} ({})", name.trim()),
        Err(_) => format!("process {pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_waits_for_the_dpkg_locks() {
        let args = install_args(&["jq", "tshark"]);
        let want = ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq"];
        assert_eq!(args[..5], want);
        assert_eq!(args[args.len() - 2..], ["jq", "tshark"]);
    }

    /// A file write-locked, as apt locks its files, through its own open
    /// file description: seen from this process as from any other.
    fn locked(name: &str) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("xtask-lock-{name}-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        // SAFETY: flock is plain data; all-zero is a valid value.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: F_OFD_SETLK on an open fd with a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        (path, file)
    }

    #[test]
    fn a_held_lock_is_waited_for_until_released() {
        let (path, holder) = locked("released");
        assert!(lock_holder(&path).is_some());
        let started = Instant::now();
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            drop(holder);
        });
        wait_for_lock(&path, Duration::from_secs(60)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(500));
        release.join().unwrap();
        assert_eq!(lock_holder(&path), None);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_lock_held_too_long_fails_naming_the_file() {
        let (path, _holder) = locked("held");
        let err = wait_for_lock(&path, Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_free_or_absent_lock_is_not_waited_for() {
        let free = std::env::temp_dir().join(format!("xtask-lock-free-{}", std::process::id()));
        File::create(&free).unwrap();
        assert_eq!(lock_holder(&free), None);
        std::fs::remove_file(&free).unwrap();
        assert_eq!(lock_holder(&free), None);
        wait_for_lock(&free, Duration::ZERO).unwrap();
    }
}
