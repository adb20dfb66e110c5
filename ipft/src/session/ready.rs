//! Readiness signals for scripts that drive traffic themselves: besides
//! `Trace ready!` on stderr, a file that appears and a TCP port that accepts.
use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

/// Undoes the signals on drop: the ready file disappears when ipft exits,
/// so a stale file never claims a later run is ready.
pub struct Ready {
    file: Option<PathBuf>,
}

/// Raises every requested signal; call once everything is attached.
pub async fn signal(file: Option<&Path>, probe_server: Option<SocketAddr>) -> Result<Ready> {
    if let Some(addr) = probe_server {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for --enable-probe-server (is the port in use?)")
        })?;
        tokio::spawn(accept_and_close(listener));
    }
    if let Some(path) = file {
        fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot create the ready file {}", path.display()))?;
    }
    Ok(Ready {
        file: file.map(Path::to_path_buf),
    })
}

/// ipftrace2's probe server: a connection that succeeds means "ready".
async fn accept_and_close(listener: TcpListener) {
    while let Ok((conn, _)) = listener.accept().await {
        drop(conn);
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(path) = &self.file {
            let _ = fs::remove_file(path);
        }
    }
}

/// Removes a ready file left by a run that was killed, before attaching.
pub fn clear_stale(file: Option<&Path>) {
    if let Some(path) = file {
        let _ = fs::remove_file(path);
    }
}
