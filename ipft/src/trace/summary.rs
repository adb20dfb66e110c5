//! What the packet is: one line per packet (`UDP 10.0.0.1:5000 -> 10.0.1.2:9999
//! len 33 dev veth1`), parsed from the header bytes an event carries, and the
//! `--field` values of each row.
use std::{
    fmt::Write,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipft_common::Event;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// The IP protocol (next header for IPv6) of the event's packet, when its
/// network header holds an IP packet.
pub fn ip_protocol(event: &Event) -> Option<u8> {
    if event.network_header == 0xffff {
        return None;
    }
    let proto = u16::from_be(event.protocol);
    let h = &event.headers;
    match h[0] >> 4 {
        4 if matches!(proto, ETH_P_IP | 0) => Some(h[9]),
        6 if matches!(proto, ETH_P_IPV6 | 0) => Some(h[6]),
        _ => None,
    }
}

/// The packet summary, when the event's network header holds an IP packet.
pub fn describe(event: &Event) -> Option<String> {
    if event.network_header == 0xffff {
        return None;
    }
    let proto = u16::from_be(event.protocol);
    let h = &event.headers;
    let (l4, src, dst, rest) = match h[0] >> 4 {
        4 if matches!(proto, ETH_P_IP | 0) => {
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]).to_string();
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]).to_string();
            (h[9], src, dst, h.get(ihl..))
        }
        6 if matches!(proto, ETH_P_IPV6 | 0) => {
            let addr = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&h[at..at + 16]).unwrap());
            (
                h[6],
                format!("[{}]", addr(8)),
                format!("[{}]", addr(24)),
                h.get(40..),
            )
        }
        _ => return None,
    };
    let mut line = match (l4, rest) {
        (6, Some(p)) if p.len() >= 4 => format!("TCP {src}:{} -> {dst}:{}", port(p, 0), port(p, 2)),
        (17, Some(p)) if p.len() >= 4 => {
            format!("UDP {src}:{} -> {dst}:{}", port(p, 0), port(p, 2))
        }
        (1, Some(p)) if p.len() >= 2 => format!("ICMP {src} -> {dst} type {} code {}", p[0], p[1]),
        (58, Some(p)) if p.len() >= 2 => {
            format!("ICMPv6 {src} -> {dst} type {} code {}", p[0], p[1])
        }
        (other, _) => format!("{} {src} -> {dst}", ip_protocol_name(other)),
    };
    let _ = write!(line, " len {}", event.len);
    if let Some(dev) = device(event) {
        let _ = write!(line, " dev {dev}");
    }
    Some(line)
}

fn port(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn ip_protocol_name(proto: u8) -> String {
    match proto {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPv6".into(),
        47 => "GRE".into(),
        50 => "ESP".into(),
        132 => "SCTP".into(),
        n => format!("proto {n}"),
    }
}

/// `skb->dev->name`, if the skb has a device.
pub fn device(event: &Event) -> Option<&str> {
    let end = event
        .dev
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(event.dev.len());
    std::str::from_utf8(&event.dev[..end])
        .ok()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(protocol: u16, headers: &[u8]) -> Event {
        let mut e = Event::zeroed();
        e.protocol = protocol.to_be();
        e.network_header = 14;
        e.headers[..headers.len()].copy_from_slice(headers);
        e.len = 33;
        e.dev[..5].copy_from_slice(b"veth1");
        e
    }

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 33, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 1, 2,
        ];
        h.extend_from_slice(l4);
        h
    }

    #[test]
    fn udp_over_ipv4() {
        let e = event(ETH_P_IP, &ipv4(17, &[0x13, 0x88, 0x27, 0x0f, 0, 13, 0, 0]));
        assert_eq!(
            describe(&e).unwrap(),
            "UDP 10.0.0.1:5000 -> 10.0.1.2:9999 len 33 dev veth1"
        );
    }

    #[test]
    fn icmp_and_tcp_over_ipv4() {
        let e = event(ETH_P_IP, &ipv4(1, &[8, 0, 0, 0]));
        assert_eq!(
            describe(&e).unwrap(),
            "ICMP 10.0.0.1 -> 10.0.1.2 type 8 code 0 len 33 dev veth1"
        );
        let e = event(ETH_P_IP, &ipv4(6, &[0, 80, 0x1f, 0x90]));
        assert_eq!(
            describe(&e).unwrap(),
            "TCP 10.0.0.1:80 -> 10.0.1.2:8080 len 33 dev veth1"
        );
    }

    #[test]
    fn udp_over_ipv6_without_device() {
        let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        h.extend(Ipv6Addr::LOCALHOST.octets());
        h.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        h.extend([0x13, 0x88, 0x27, 0x0f]);
        let mut e = event(ETH_P_IPV6, &h);
        e.dev = [0; 16];
        assert_eq!(
            describe(&e).unwrap(),
            "UDP [::1]:5000 -> [fd00::2]:9999 len 33"
        );
    }

    #[test]
    fn no_summary_without_a_network_header() {
        let mut e = event(ETH_P_IP, &ipv4(17, &[]));
        e.network_header = 0xffff;
        assert_eq!(describe(&e), None);
        let e = event(ETH_P_IP, &[0x00; 20]);
        assert_eq!(describe(&e), None, "not IP");
        let e = event(0x0806, &ipv4(17, &[]));
        assert_eq!(describe(&e), None, "ARP protocol");
    }
}
