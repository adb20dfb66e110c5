//! Marked packets on loopback.
//!
//! UDP receivers ("sinks") never read: each datagram's skb stays queued on
//! its socket until the test drops it, after ipft has stopped. The kernel reuses a freed
//! skb's address and ipft (like ipftrace2) groups by that address, so freed
//! skbs could merge two datagrams into one group; live ones cannot. No skb
//! tracepoint fires when UDP frees a received datagram, so the tracepoint
//! backend has no way to split such a merge itself.
use std::{net::UdpSocket, os::fd::AsRawFd, process::Command};

/// A UDP socket on 127.0.0.1 that receives and never reads.
pub fn sink() -> UdpSocket {
    sink_on("127.0.0.1")
}

/// A UDP socket on `ip` (`127.0.0.1`, `[::1]`) that receives and never
/// reads; also a sender without a mark.
pub fn sink_on(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).unwrap_or_else(|e| panic!("bind a UDP socket on {ip}: {e}"))
}

/// A UDP socket whose datagrams carry `mark` (SO_MARK; needs root or
/// CAP_NET_ADMIN), or no mark.
pub fn sender(mark: Option<u32>) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP sender on 127.0.0.1");
    if let Some(mark) = mark {
        set_mark(&socket, mark);
    }
    socket
}

pub fn set_mark(socket: &UdpSocket, mark: u32) {
    // SAFETY: setsockopt with a valid fd and a pointer to a live u32 of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_MARK, {mark:#x}) failed (the tests need root): {}",
        std::io::Error::last_os_error()
    );
}

/// Sends one small datagram from `from` to `to`.
pub fn send(from: &UdpSocket, to: &UdpSocket) {
    let addr = to.local_addr().unwrap();
    from.send_to(b"ipft", addr)
        .unwrap_or_else(|e| panic!("send a datagram to {addr}: {e}"));
}

/// Sends `count` datagrams from `from`, each to a sink of its own, and waits
/// until each is queued there: then its whole path through the kernel has
/// run (the receive half may run later, in ksoftirqd, than `send_to`
/// returning), and every event is in ipft's buffers before the test stops
/// ipft. Keep the returned sinks until ipft has stopped (see above).
pub fn send_datagrams(from: &UdpSocket, count: usize) -> Vec<UdpSocket> {
    let sinks: Vec<UdpSocket> = (0..count).map(|_| sink()).collect();
    send_to_each(from, &sinks);
    sinks
}

/// Sends one datagram from `from` to each of `sinks`, and waits until each
/// is queued (see [`send_datagrams`]).
pub fn send_to_each(from: &UdpSocket, sinks: &[UdpSocket]) {
    for to in sinks {
        send(from, to);
    }
    for to in sinks {
        wait_queued(to);
    }
}

/// Waits (hang protection: 10 s) until `socket` has a datagram to read.
fn wait_queued(socket: &UdpSocket) {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own.
    let n = unsafe { libc::poll(&mut fd, 1, 10_000) };
    assert_eq!(
        n,
        1,
        "a datagram to {} never arrived",
        socket.local_addr().unwrap()
    );
}

/// `ping -m <decimal mark> -c 1 127.0.0.1` (iputils; takes decimal only).
pub fn ping(mark: u32) {
    let status = Command::new("ping")
        .args(["-m", &mark.to_string(), "-c", "1", "-W", "5", "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run ping (Debian package iputils-ping; `cargo xtask test` installs it)");
    assert!(
        status.success(),
        "ping -m {mark} -c 1 127.0.0.1 failed: {status}"
    );
}

/// Tracepoints a UDP datagram to 127.0.0.1 hits, in this order, on every
/// kernel with BTF tracepoints (the VM suite runs these tests on 6.1 and
/// 6.12 as well): net_dev_queue in __dev_queue_xmit, net_dev_start_xmit
/// before loopback_xmit, whose netif_rx fires `netif_rx`, net_dev_xmit once
/// loopback_xmit returns, then netif_receive_skb from the backlog. Nothing
/// fires when UDP frees the delivered skb (neither consume_skb nor
/// skb_copy_datagram_iovec on the linear copy path), so this is the whole
/// required path.
pub const UDP_PATH: &[&str] = &[
    "net_dev_queue",
    "net_dev_start_xmit",
    "netif_rx",
    "net_dev_xmit",
    "netif_receive_skb",
];

/// An ICMP echo request to 127.0.0.1: the UDP path, then icmp_rcv frees the
/// request with consume_skb. The reply is a new skb with mark 0
/// (net.ipv4.fwmark_reflect=0), so the trace ends there.
pub const PING_PATH: &[&str] = &[
    "net_dev_queue",
    "net_dev_start_xmit",
    "netif_rx",
    "net_dev_xmit",
    "netif_receive_skb",
    "consume_skb",
];
