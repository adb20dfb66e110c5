//! SIGINT and SIGTERM, caught from the first instant: a Ctrl-C during
//! start-up must stop ipft, not be lost.
use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

/// SIGINT and SIGTERM, as one stream: both mean "stop".
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers: from here on SIGINT and SIGTERM are caught
    /// (and remembered until the session looks), not fatal.
    pub fn new() -> Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
    }
}
