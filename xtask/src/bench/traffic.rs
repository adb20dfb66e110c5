//! Loopback traffic for the benchmark: a marked UDP burst, and unmarked UDP
//! and TCP throughput. Loopback only, every run bounded in time.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Payload of a "small" UDP datagram.
const SMALL: usize = 16;
/// Write size of the TCP bulk transfer.
const BULK: usize = 64 * 1024;

/// Sends `count` UDP datagrams carrying SO_MARK `mark` to a local receiver,
/// as fast as the kernel takes them; returns how many were sent.
pub fn marked_burst(mark: u32, count: u64) -> Result<u64> {
    let (rx, stop, drained) = udp_sink()?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    set_mark(&tx, mark)?;
    let to = rx;
    let mut sent = 0;
    let buf = [0u8; SMALL];
    while sent < count {
        match tx.send_to(&buf, to) {
            Ok(_) => sent += 1,
            // A full socket buffer: give the receiver a moment, retry.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                thread::sleep(Duration::from_micros(50))
            }
            Err(e) => return Err(e).context("sending a marked datagram"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drained.join();
    Ok(sent)
}

/// Unmarked small datagrams received per second over `secs`.
pub fn udp_rate(secs: f64) -> Result<f64> {
    let (to, stop, drained) = udp_sink()?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    let buf = [0u8; SMALL];
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        // Drops at a full receive buffer are part of the measurement.
        let _ = tx.send_to(&buf, to);
    }
    // Datagrams still in flight belong to the measured interval.
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let received = drained.join().unwrap_or(0);
    Ok(received as f64 / secs)
}

/// Unmarked TCP bytes received per second over `secs`.
pub fn tcp_rate(secs: f64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = thread::spawn(move || -> u64 {
        let Ok((mut conn, _)) = listener.accept() else {
            return 0;
        };
        let mut buf = vec![0u8; BULK];
        let mut total = 0;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut conn = TcpStream::connect(addr)?;
    let buf = vec![0u8; BULK];
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        conn.write_all(&buf)?;
    }
    drop(conn);
    let bytes = reader.join().unwrap_or(0);
    Ok(bytes as f64 / secs)
}

/// Unmarked small datagrams per second over `secs`, one thread sending
/// each and reading it back: every datagram's whole path runs on one CPU,
/// none is dropped, so on a one-vCPU, instruction-counted guest the figure
/// repeats exactly (two threads would measure the scheduler).
pub fn lockstep_rate(secs: f64) -> Result<f64> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    let (mut received, mut buf) = (0u64, [0u8; 2048]);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        tx.send(&[0u8; SMALL])?;
        if rx.recv(&mut buf).is_ok() {
            received += 1;
        }
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}

type Sink = (
    std::net::SocketAddr,
    Arc<AtomicBool>,
    thread::JoinHandle<u64>,
);

/// A UDP receiver on its own thread, counting datagrams until told to stop.
fn udp_sink() -> Result<Sink> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    let addr = rx.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        loop {
            match rx.recv(&mut buf) {
                Ok(_) => n += 1,
                Err(_) if flag.load(Ordering::Relaxed) => return n,
                Err(_) => {}
            }
        }
    });
    Ok((addr, stop, handle))
}

fn set_mark(sock: &UdpSocket, mark: u32) -> Result<()> {
    // SAFETY: a valid socket and a u32 option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_MARK: {} (needs root)", std::io::Error::last_os_error());
    }
    Ok(())
}
