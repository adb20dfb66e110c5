//! Traffic whose end the test can wait for: datagrams to a closed port
//! (dropped, with an ICMP error back), datagrams a socket reads, IPv6
//! datagrams, and pings to any address.
use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::Duration,
};

use crate::packets::{self, set_mark};

/// A marked UDP socket connected to a port nobody listens on: each datagram
/// is dropped by the receiver (`NO_SOCKET`), which answers with ICMP port
/// unreachable, reported on this socket as ECONNREFUSED.
pub struct ClosedPort {
    socket: UdpSocket,
}

impl ClosedPort {
    pub fn new(mark: u32) -> ClosedPort {
        // A port that was just bound and released: closed, and not reused
        // for a while (ephemeral ports rotate).
        let closed = packets::sink().local_addr().unwrap();
        let socket = packets::sender(Some(mark));
        socket.connect(closed).expect("connect to the closed port");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        ClosedPort { socket }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn peer(&self) -> SocketAddr {
        self.socket.peer_addr().unwrap()
    }

    /// Sends one datagram and waits for the port unreachable error: by then
    /// the receiver has dropped (freed) the datagram.
    pub fn send_and_wait_dropped(&self) {
        self.socket.send(b"ipft").expect("send to the closed port");
        let mut buf = [0u8; 16];
        let err = self.socket.recv(&mut buf).err();
        let kind = err.as_ref().map(|e| e.kind());
        assert_eq!(
            kind,
            Some(ErrorKind::ConnectionRefused),
            "a datagram to the closed port {} must come back refused: {err:?}",
            self.peer()
        );
    }
}

/// Sends one datagram from `from` to `to` and reads it on `to`: the kernel
/// frees the delivered skb on that read, so its memory can be reused.
pub fn send_and_read(from: &UdpSocket, to: &UdpSocket) {
    packets::send(from, to);
    to.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let read = to.recv(&mut buf);
    assert!(read.is_ok(), "the datagram never arrived: {read:?}");
}

/// A UDP receiver on [::1] that never reads.
pub fn sink_v6() -> UdpSocket {
    UdpSocket::bind("[::1]:0").expect("bind a UDP receiver on [::1] (is IPv6 on?)")
}

/// A UDP socket on [::1] whose datagrams carry `mark`.
pub fn sender_v6(mark: u32) -> UdpSocket {
    let socket = UdpSocket::bind("[::1]:0").expect("bind a UDP sender on [::1]");
    set_mark(&socket, mark);
    socket
}

/// `ping -m MARK -c COUNT -i 0.05 DEST`: each request waits for its reply
/// (or 5 s), so by the end every request was consumed.
pub fn ping(mark: u32, dest: IpAddr, count: u32) {
    let args = [
        "-m",
        &mark.to_string(),
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
        "-W",
        "5",
        &dest.to_string(),
    ];
    let status = Command::new("ping")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run ping (Debian package iputils-ping)");
    assert!(status.success(), "ping {} failed: {status}", args.join(" "));
}
