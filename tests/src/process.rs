//! Running ipft as a child: wait for `Trace ready!`, signal it, collect what
//! it wrote. Every wait has a timeout, but only as hang protection: no test
//! asserts how long anything took.
use std::{
    fmt,
    fs::File,
    io::{BufRead, BufReader, Read},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    ptr,
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use regex::Regex;

/// Start-up reads BTF and attaches programs; slow on a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// From a signal (or an error) to the process being gone.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// For JSON lines to reach ipft's stdout after the packets were sent.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test, for a test's body: the harness runs a test only
/// where [`find_ipft`] found one.
pub fn ipft_bin() -> PathBuf {
    find_ipft().unwrap_or_else(|why| panic!("{why}"))
}

/// The ipft under test (`IPFT_BIN`), or why there is none: then no
/// end-to-end test can run ([`crate::harness`] ignores them all).
pub fn find_ipft() -> Result<PathBuf, String> {
    let Some(path) = std::env::var_os("IPFT_BIN") else {
        return Err(
            "IPFT_BIN is not set: run the suite with `cargo xtask test`, or \
             `cargo xtask build --test-hooks` then `IPFT_BIN=$PWD/target/debug/ipft cargo test -p ipft-tests`"
                .into(),
        );
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!(
            "IPFT_BIN={} does not exist: build it with `cargo xtask build --test-hooks`",
            path.display()
        ));
    }
    Ok(path)
}

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    closed: bool,
}

/// What a child wrote to one pipe so far, filled by a reader thread.
#[derive(Clone, Default)]
struct Pipe(Arc<(Mutex<Buffer>, Condvar)>);

impl Pipe {
    fn push(&self, bytes: &[u8]) {
        let (buffer, changed) = &*self.0;
        buffer.lock().unwrap().data.extend_from_slice(bytes);
        changed.notify_all();
    }

    fn close(&self) {
        let (buffer, changed) = &*self.0;
        buffer.lock().unwrap().closed = true;
        changed.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0 .0.lock().unwrap().data).into_owned()
    }

    /// Waits until `done` holds for the text so far. False on timeout, or when
    /// the pipe closed (the child exited) without it.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (buffer, changed) = &*self.0;
        let mut buf = buffer.lock().unwrap();
        loop {
            if done(&String::from_utf8_lossy(&buf.data)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if buf.closed || left.is_zero() {
                return false;
            }
            buf = changed.wait_timeout(buf, left).unwrap().0;
        }
    }

    /// Waits for the writer to close its end (EOF): `wait_for` with a
    /// predicate that never holds returns exactly then (or on timeout).
    fn wait_closed(&self, timeout: Duration) {
        self.wait_for(timeout, |_| false);
    }

    /// Reads `from` to its end on a thread.
    fn read_all(mut from: impl Read + Send + 'static) -> Pipe {
        let pipe = Pipe::default();
        let writer = pipe.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut chunk) {
                writer.push(&chunk[..n]);
            }
            writer.close();
        });
        pipe
    }

    /// Reads one line on a thread, then drops `from`: a reader like `head -1`.
    fn read_first_line(from: impl Read + Send + 'static) -> Pipe {
        let pipe = Pipe::default();
        let writer = pipe.clone();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(from).read_line(&mut line);
            writer.push(line.as_bytes());
            writer.close();
        });
        pipe
    }
}

/// What to do with ipft's stdout.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum StdoutMode {
    #[default]
    Collect,
    /// Read one line, then close the pipe, like `ipft -o json | head -1`.
    FirstLineThenClose,
    /// Left to the test: [`Ipft::take_stdout`] (to count a flood's lines
    /// without keeping them).
    Caller,
}

/// How to run ipft, beyond its arguments.
#[derive(Clone, Copy, Default)]
pub struct Setup {
    pub stdout: StdoutMode,
    /// Run as this user instead of root (for the permission error).
    pub uid: Option<u32>,
    /// stderr on a pseudo-terminal instead of a pipe.
    pub stderr_tty: bool,
    /// `IPFT_TEST_HOOK`: a rare moment on demand (see ipft/src/testhook.rs).
    pub hook: Option<&'static str>,
}

/// A pseudo-terminal: (master, to read; slave, for the child). Output
/// processing is off, so every `\r` read comes from ipft, not from the
/// terminal turning `\n` into `\r\n`.
fn pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two fds; the null pointers are documented as allowed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            ptr::null_mut(),
            ptr::null(),
            ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data; tcgetattr/tcsetattr on a valid tty fd.
    unsafe {
        let mut tio: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut tio), 0);
        tio.c_oflag &= !libc::OPOST;
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &tio), 0);
    }
    (master, slave)
}

/// A finished run.
pub struct Output {
    /// The command line: ipft's arguments (which backend was asked for
    /// decides what stderr must say), or another command's words.
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Non-empty stderr lines, `\r` rewrites split like a terminal shows them.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The `-b` value ipft was given, `auto` without one.
    pub fn backend_asked(&self) -> &str {
        let options = self.args.iter().take_while(|a| *a != "--");
        for (i, word) in options.enumerate() {
            if let Some(backend) = word.strip_prefix("--backend=") {
                return backend;
            }
            if word == "-b" || word == "--backend" {
                return self.args.get(i + 1).map_or("auto", String::as_str);
            }
        }
        "auto"
    }

    /// The last `Got N traces` on stderr.
    pub fn got_traces(&self) -> Option<u64> {
        last_got(&self.stderr)
    }
}

/// Status and both streams: the message of every failed assertion.
impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let signal = self
            .status
            .signal()
            .map(|s| format!(" (signal {s})"))
            .unwrap_or_default();
        write!(
            f,
            "`{}` exited with {}{signal}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

fn last_got(stderr: &str) -> Option<u64> {
    let got = Regex::new(r"Got (\d+) traces").unwrap();
    got.captures_iter(stderr)
        .last()
        .map(|c| c[1].parse().unwrap())
}

/// A running ipft. Dropping it kills the process, so a failing test never
/// leaves a tracer behind.
pub struct Ipft {
    child: Child,
    stdout: Pipe,
    stderr: Pipe,
    args: Vec<String>,
    /// With [`StdoutMode::Caller`], until taken.
    raw_stdout: Option<std::process::ChildStdout>,
}

impl Ipft {
    pub fn spawn(args: &[&str]) -> Ipft {
        Ipft::spawn_with(args, Setup::default())
    }

    pub fn spawn_with(args: &[&str], setup: Setup) -> Ipft {
        let mut cmd = Command::new(ipft_bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        if let Some(uid) = setup.uid {
            cmd.uid(uid).gid(uid);
        }
        if let Some(hook) = setup.hook {
            cmd.env("IPFT_TEST_HOOK", hook);
        }
        // The master end of a pty reads until every slave fd is closed (EIO):
        // `cmd` holds our copy of the slave and is dropped on return.
        let tty_master = match setup.stderr_tty {
            true => {
                let (master, slave) = pty();
                cmd.stderr(Stdio::from(slave));
                Some(master)
            }
            false => {
                cmd.stderr(Stdio::piped());
                None
            }
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", ipft_bin().display()));
        let out = child.stdout.take().unwrap();
        let mut raw_stdout = None;
        let stdout = match setup.stdout {
            StdoutMode::Collect => Pipe::read_all(out),
            StdoutMode::FirstLineThenClose => Pipe::read_first_line(out),
            StdoutMode::Caller => {
                raw_stdout = Some(out);
                Pipe::read_all(std::io::empty())
            }
        };
        let stderr = match tty_master {
            Some(master) => Pipe::read_all(master),
            None => Pipe::read_all(child.stderr.take().unwrap()),
        };
        let args = args.iter().map(|a| a.to_string()).collect();
        Ipft {
            child,
            stdout,
            stderr,
            args,
            raw_stdout,
        }
    }

    /// Spawns and waits for `Trace ready!`; panics with ipft's output when it
    /// exits or hangs instead. BPF being unavailable fails here, never skips.
    pub fn start(args: &[&str]) -> Ipft {
        let mut ipft = Ipft::spawn(args);
        ipft.wait_ready();
        ipft
    }

    pub fn wait_ready(&mut self) {
        if self
            .stderr
            .wait_for(READY_TIMEOUT, |s| s.contains("Trace ready!"))
        {
            return;
        }
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        let out = self.collect(status);
        panic!(
            "`ipft {}` never printed `Trace ready!`\n{out}",
            self.args.join(" ")
        );
    }

    /// ipft's stdout, with [`StdoutMode::Caller`].
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.raw_stdout
            .take()
            .expect("spawned with StdoutMode::Caller")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Waits until stdout has at least `n` complete lines (JSON mode).
    pub fn wait_for_stdout_lines(&self, n: usize) -> bool {
        self.stdout
            .wait_for(EVENT_TIMEOUT, |s| s.matches('\n').count() >= n)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends `signal` and waits for ipft to exit.
    pub fn stop(self, signal: i32) -> Output {
        self.signal(signal);
        self.wait_exit()
    }

    /// The exit status, if ipft exits within `timeout`.
    pub fn try_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for ipft to exit on its own; panics (after killing it) on a hang.
    pub fn wait_exit(mut self) -> Output {
        match self.try_exit(EXIT_TIMEOUT) {
            Some(status) => self.collect(status),
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                let out = self.collect(status);
                panic!("`ipft {}` did not exit\n{out}", self.args.join(" "));
            }
        }
    }

    /// Both streams after exit (the reader threads see EOF shortly after).
    fn collect(&self, status: ExitStatus) -> Output {
        self.stdout.wait_closed(EXIT_TIMEOUT);
        self.stderr.wait_closed(EXIT_TIMEOUT);
        Output {
            args: [&["ipft".to_string()], &self.args[..]].concat(),
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl Drop for Ipft {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs ipft to completion (errors, `-l`, `-h`).
pub fn run(args: &[&str]) -> Output {
    Ipft::spawn(args).wait_exit()
}
