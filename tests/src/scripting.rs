//! What scripts see of ipft, checked from outside: scratch directories for
//! output and ready files, readiness signals, free ports, listening sockets,
//! and other commands (`script`, `sh`, `jq`) run with hang protection.
use std::{
    fs,
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Ipft, Output};

/// Hang protection for waits that poll (files, ports, other commands).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory of a test's own, removed when the test ends, failed or not.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// `$TMPDIR/ipft-test-PID-NAME`, empty.
    pub fn new(name: &str) -> Scratch {
        let dir = format!("ipft-test-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(dir);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a scratch directory");
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The names in the directory, hidden ones included, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .expect("read the scratch directory")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Calls `done` every 10 ms until it holds; false after `timeout`.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a TCP port");
    listener.local_addr().unwrap().port()
}

/// Whether a TCP connection to 127.0.0.1:`port` is accepted.
pub fn connects(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok()
}

/// Connects to 127.0.0.1:`port` and reads until the server closes: true if it
/// closed (EOF) without sending anything.
pub fn accepted_and_closed(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    matches!(conn.read(&mut buf), Ok(0))
}

/// Local addresses of the IPv4 and IPv6 TCP sockets listening on `port`,
/// from /proc/net/tcp{,6} (hex, as the kernel prints them: `0100007F` is
/// 127.0.0.1).
pub fn listening_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some((addr, hex_port)) = cols.get(1).and_then(|a| a.split_once(':')) else {
                continue;
            };
            let listening = cols.get(3) == Some(&"0A");
            if listening && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(addr.to_string());
            }
        }
    }
    found
}

/// How many BPF links a process holds (fds whose fdinfo has `link_type:`):
/// with the tracepoint backend, one per attached tracepoint.
pub fn links_held_by(pid: i32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| fs::read_to_string(fd.path()).ok())
        .filter(|info| info.contains("link_type:"))
        .count()
}

/// Waits for a readiness signal while ipft starts, and returns how many BPF
/// links ipft held the moment the signal was first seen.
///
/// ipft raises its signals (ready file, probe server) just before it prints
/// `Trace ready!`. So stderr is read before each look at the signal: once it
/// shows `Trace ready!`, the signal must be up. A signal raised before
/// attaching shows as fewer links than the attach line counts.
pub fn links_when_signalled(ipft: &Ipft, mut signalled: impl FnMut() -> bool) -> usize {
    let mut links = None;
    let seen = poll_until(POLL_TIMEOUT, || {
        let printed = ipft.stderr().contains("Trace ready!");
        if signalled() {
            links = Some(links_held_by(ipft.pid()));
            return true;
        }
        assert!(
            !printed,
            "`Trace ready!` was printed but the readiness signal is not up\n{}",
            ipft.stderr()
        );
        false
    });
    assert!(seen, "no readiness signal\n{}", ipft.stderr());
    links.unwrap()
}

/// Runs `cmd` to its end (hang protection: [`POLL_TIMEOUT`]), capturing
/// both streams; stdin is /dev/null.
pub fn run_bounded(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let words = cmd.get_args().map(|a| a.to_string_lossy().into_owned());
    let args = std::iter::once(program).chain(words).collect();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let read = |mut from: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let mut status = None;
    poll_until(POLL_TIMEOUT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish");
    };
    Output {
        args,
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
