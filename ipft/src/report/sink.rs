//! Where results go: stdout, or `--output-file`; stderr when `-w -` takes
//! stdout for the pcapng stream. In ipft, not ipft-output: it owns the
//! run's files and stdout (ipft-output writes to any `Write`).
//!
//! json (and `-w`'s pcapng) streams into the file as events arrive. The
//! aggregate table is written to a temporary file next to the target and
//! renamed over it on success, so a reader never sees a half-written table.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Stderr, Stdout, Write},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context, Result};

pub enum Sink {
    Stdout(BufWriter<Stdout>),
    /// The table or json while `-w -` writes pcapng to stdout.
    Stderr(BufWriter<Stderr>),
    /// json: written in place; `path` is removed if the run ends before
    /// anything was written (a failed start leaves no empty file behind).
    Stream {
        file: BufWriter<File>,
        path: PathBuf,
        done: bool,
    },
    /// aggregate: written to `tmp`, renamed to `path` by [`Sink::finish`].
    Atomic {
        file: BufWriter<File>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

impl Sink {
    /// Opens the destination now, so a bad path fails before attaching.
    /// `streaming` selects json's in-place writing.
    pub fn open(path: Option<&Path>, force: bool, streaming: bool) -> Result<Sink> {
        let Some(path) = path else {
            widen_stdout_pipe();
            return Ok(Sink::Stdout(BufWriter::new(io::stdout())));
        };
        if streaming {
            let file = create(path, force).map_err(|e| cannot_create(path, e))?;
            return Ok(Sink::Stream {
                file: BufWriter::new(file),
                path: path.to_path_buf(),
                done: false,
            });
        }
        let tmp = temporary_path(path);
        let file = create(&tmp, true).map_err(|e| cannot_create(path, e))?;
        Ok(Sink::Atomic {
            file: BufWriter::new(file),
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// `-w FILE`: streamed in place, replacing FILE as tcpdump does; removed
    /// if the run ends before it was started.
    pub fn open_capture(path: &Path) -> Result<Sink> {
        let file = create(path, true).map_err(|e| {
            anyhow!(
                "cannot create the pcapng file {} ({e}): choose a writable -w FILE",
                path.display()
            )
        })?;
        Ok(Sink::Stream {
            file: BufWriter::new(file),
            path: path.to_path_buf(),
            done: false,
        })
    }

    /// The table or json on stderr (`-w -` has stdout).
    pub fn stderr() -> Sink {
        Sink::Stderr(BufWriter::new(io::stderr()))
    }

    /// Flushes, and for the aggregate file puts it in place.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        if let Sink::Atomic { tmp, path, .. } = &self {
            fs::rename(tmp, path)?;
        }
        // Renamed or complete: nothing left for Drop to clean up.
        match &mut self {
            Sink::Atomic { tmp, .. } => tmp.clear(),
            Sink::Stream { done, .. } => *done = true,
            Sink::Stdout(_) => close_stdout(),
            Sink::Stderr(_) => {}
        }
        Ok(())
    }
}

/// Points stdout at /dev/null once its output is complete, so that a reader
/// (`ipft -w - | tshark -r -`) sees the end now, not after the detach
/// that follows. Best effort: if /dev/null cannot be opened, the end comes
/// when ipft exits.
fn close_stdout() {
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto fd 1, which the Stdout writer (flushed) reuses.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), libc::STDOUT_FILENO) };
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::Stderr(w) => w.write(buf),
            Sink::Stream { file: w, .. } | Sink::Atomic { file: w, .. } => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::Stderr(w) => w.write_all(buf),
            Sink::Stream { file: w, .. } | Sink::Atomic { file: w, .. } => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Stderr(w) => w.flush(),
            Sink::Stream { file: w, .. } | Sink::Atomic { file: w, .. } => w.flush(),
        }
    }
}

impl Drop for Sink {
    /// An aggregate file that was never finished leaves nothing behind, nor
    /// does a json file nothing was written to.
    fn drop(&mut self) {
        match self {
            Sink::Atomic { tmp, .. } if !tmp.as_os_str().is_empty() => {
                let _ = fs::remove_file(tmp);
            }
            Sink::Stream {
                file,
                path,
                done: false,
            } => {
                let _ = file.flush();
                if file.get_ref().metadata().is_ok_and(|m| m.len() == 0) {
                    let _ = fs::remove_file(path);
                }
            }
            _ => {}
        }
    }
}

/// Names the user's path, not the temporary one, and why it failed.
/// Gives stdout, when it is a pipe, a 1 MiB buffer (the most an
/// unprivileged user may set by default): a burst's table is tens of MB,
/// written in pieces of about 700 KB, and with the default 64 KiB pipe
/// ipft and the reader would take turns sixteen times as often. Best
/// effort: anything but a pipe refuses, and nothing changes.
fn widen_stdout_pipe() {
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours.
    unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_SETPIPE_SZ, 1 << 20) };
}

fn cannot_create(path: &Path, err: io::Error) -> anyhow::Error {
    anyhow!(
        "cannot create the output file {} ({err}): choose a writable --output-file",
        path.display()
    )
}

fn create(path: &Path, replace: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path)
}

/// `dir/.name.ipft-PID.tmp`: same directory, so the rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.ipft-{}.tmp", std::process::id()))
}

/// `Ok(false)` when the reader closed its end of the output.
pub fn ok_unless_closed(written: io::Result<()>) -> Result<bool> {
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write the output"),
    }
}

pub fn ignore_broken_pipe(result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipft-output-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn aggregate_appears_only_when_finished() {
        let dir = scratch("atomic");
        let path = dir.join("out.txt");
        let mut sink = Sink::open(Some(&path), false, false).unwrap();
        sink.write_all(b"table\n").unwrap();
        assert!(!path.exists(), "visible before finish");
        sink.finish().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "table\n");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }

    #[test]
    fn unfinished_aggregate_leaves_nothing() {
        let dir = scratch("dropped");
        let path = dir.join("out.txt");
        let mut sink = Sink::open(Some(&path), false, false).unwrap();
        sink.write_all(b"half").unwrap();
        drop(sink);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn json_streams_and_refuses_to_replace_without_force() {
        let dir = scratch("stream");
        let path = dir.join("out.json");
        fs::write(&path, "old").unwrap();
        assert!(Sink::open(Some(&path), false, true).is_err());
        let mut sink = Sink::open(Some(&path), true, true).unwrap();
        sink.write_all(b"{}\n").unwrap();
        sink.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    }

    #[test]
    fn an_empty_json_file_of_a_failed_run_is_removed() {
        let dir = scratch("failed");
        let path = dir.join("out.json");
        drop(Sink::open(Some(&path), false, true).unwrap());
        assert!(!path.exists());
        let mut sink = Sink::open(Some(&path), false, true).unwrap();
        sink.write_all(b"{}\n").unwrap();
        drop(sink);
        assert!(path.exists(), "written events are kept");
    }

    #[test]
    fn missing_directory_fails_at_open() {
        let err = Sink::open(Some(Path::new("/nonexistent-dir/out")), false, true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/out"));
    }
}
