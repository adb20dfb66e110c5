//! Command mode: `ipft -m MARK -- COMMAND ARGS…` runs the command once
//! tracing is ready and stops when it exits.
use std::{
    env, io,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::cli::{Options, Output};

/// Exit codes for a command that cannot run, as `env`, `timeout` and
/// shells use them.
pub const NOT_EXECUTABLE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

/// Why a command cannot run, found before attaching so the user does not
/// wait for nothing; with the conventional exit code.
pub fn check(program: &str) -> Result<(), (u8, String)> {
    match find(program) {
        None => Err((NOT_FOUND, format!("command not found: {program}"))),
        Some(path) if !is_executable(&path) => Err((
            NOT_EXECUTABLE,
            format!("command is not executable: {}", path.display()),
        )),
        Some(_) => Ok(()),
    }
}

fn find(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the command's stdout goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStdout {
    /// ipft's stdout: it holds only the table, printed once the command
    /// is done, for a person to read.
    Shared,
    /// ipft's stderr: ipft's stdout carries data for a program (`-w -`'s
    /// pcapng, or json), which the command's lines would corrupt.
    ToStderr,
}

impl CommandStdout {
    /// ipft's stdout carries data for a program when `-w -` streams pcapng
    /// there, or json goes there (no `--output-file`).
    pub fn for_options(opts: &Options) -> CommandStdout {
        let capture = opts.write.as_deref() == Some(Path::new("-"));
        let json = opts.output == Output::Json && opts.output_file.is_none();
        match capture || json {
            true => CommandStdout::ToStderr,
            false => CommandStdout::Shared,
        }
    }
}

/// Starts the command with ipft's stdin and stderr, and its stdout where
/// `stdout` says.
pub fn spawn(argv: &[String], stdout: CommandStdout) -> Result<Child> {
    let Some((program, args)) = argv.split_first() else {
        bail!("no command given")
    };
    let mut command = Command::new(program);
    command.args(args);
    if stdout == CommandStdout::ToStderr {
        command.stdout(Stdio::from(io::stderr()));
    }
    command
        .spawn()
        .with_context(|| format!("cannot run {program}"))
}

/// How long a command has to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// Stops a command ipft no longer waits for: SIGTERM, then SIGKILL if it
/// is still running after [`GRACE`].
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The status a shell would report: the exit code, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn missing_and_unexecutable_commands_get_shell_codes() {
        assert_eq!(check("no-such-command-ipft").unwrap_err().0, NOT_FOUND);
        let plain =
            std::env::temp_dir().join(format!("ipft-not-executable-{}", std::process::id()));
        std::fs::write(&plain, "data").unwrap();
        assert_eq!(
            check(plain.to_str().unwrap()).unwrap_err().0,
            NOT_EXECUTABLE
        );
        std::fs::remove_file(plain).unwrap();
        assert!(check("sh").is_ok());
    }

    #[test]
    fn the_commands_stdout_leaves_a_stdout_that_carries_data() {
        let stdout_for = |args: &[&str]| {
            let argv = [&["ipft", "-m", "1"], args, &["--", "true"]].concat();
            CommandStdout::for_options(&Options::try_parse_from(argv).unwrap())
        };
        use CommandStdout::{Shared, ToStderr};
        assert_eq!(stdout_for(&[]), Shared, "the table is for a person");
        assert_eq!(stdout_for(&["--output-file", "t.txt"]), Shared);
        assert_eq!(stdout_for(&["-w", "t.pcapng"]), Shared);
        assert_eq!(stdout_for(&["-w", "-"]), ToStderr, "pcapng on stdout");
        assert_eq!(stdout_for(&["-o", "json"]), ToStderr, "json on stdout");
        assert_eq!(stdout_for(&["-o", "json", "-w", "t.pcapng"]), ToStderr);
        assert_eq!(
            stdout_for(&["-o", "json", "--output-file", "t.json"]),
            Shared
        );
        assert_eq!(stdout_for(&["-o", "json", "-w", "-"]), ToStderr);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
