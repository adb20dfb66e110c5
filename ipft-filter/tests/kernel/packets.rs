//! The packets the filter's differential test runs on, made here: IPv4
//! and IPv6 (with options, fragments and extension headers) carrying TCP,
//! UDP, ICMP, ICMPv6, GRE or ESP, ARP and LLDP, each plain, VLAN-tagged
//! (two VLANs) and double-tagged, and copies cut short.

/// A frame, from its Ethernet header: its `bytes`, of which the first
/// `at_hand` are in the skb's linear data (all but in the copies cut short);
/// `wire_len` is the whole packet's length.
pub struct Packet {
    pub name: String,
    pub bytes: Vec<u8>,
    pub at_hand: usize,
    pub wire_len: u32,
}

/// Every packet of the test.
pub fn corpus() -> Vec<Packet> {
    let mut packets = Vec::new();
    for (name, ethertype, payload) in payloads() {
        for (framing, tags) in FRAMINGS {
            let bytes = ethernet(&mac(1), &mac(2), tags, ethertype, &payload);
            packets.push(whole(format!("{name} {framing}"), bytes));
        }
    }
    let cut: Vec<Packet> = packets.iter().step_by(5).map(cut_short).collect();
    packets.extend(cut);
    packets.extend(odd_macs());
    packets
}

/// VLAN tags in front of the EtherType: (TPID, VLAN id).
const FRAMINGS: &[(&str, &[(u16, u16)])] = &[
    ("untagged", &[]),
    ("vlan 10", &[(0x8100, 10)]),
    ("vlan 20", &[(0x8100, 20)]),
    ("qinq 100/10", &[(0x88a8, 100), (0x8100, 10)]),
];

fn whole(name: String, bytes: Vec<u8>) -> Packet {
    Packet {
        name,
        at_hand: bytes.len(),
        wire_len: bytes.len() as u32,
        bytes,
    }
}

/// The same frame with only its first bytes at hand, as when the rest is
/// in paged data: a cut in the network or transport header.
fn cut_short(packet: &Packet) -> Packet {
    let keep = 14 + (packet.bytes.len() - 14) * 2 / 5;
    Packet {
        name: format!("{} cut to {keep}", packet.name),
        at_hand: keep,
        ..whole(String::new(), packet.bytes.clone())
    }
}

/// Broadcast and multicast destinations, for `ether broadcast` and
/// `ether multicast`, and a frame carrying no IP.
fn odd_macs() -> Vec<Packet> {
    let udp4 = ipv4(
        V4[0],
        [255, 255, 255, 255],
        17,
        &[],
        0,
        &udp(68, 67, &[0; 30]),
    );
    let udp6 = ipv6(V6[1], V6[2], 17, &udp(5353, 5353, &[0; 12]));
    [
        ("broadcast dhcp", [0xff; 6], 0x0800, udp4),
        ("multicast mdns6", [0x33, 0x33, 0, 0, 0, 0xfb], 0x86dd, udp6),
        (
            "lldp",
            [0x01, 0x80, 0xc2, 0, 0, 0x0e],
            0x88cc,
            vec![2, 7, 4, 1, 2, 3, 4],
        ),
    ]
    .into_iter()
    .map(|(name, dst, ethertype, payload)| {
        whole(
            name.into(),
            ethernet(&dst, &mac(3), &[], ethertype, &payload),
        )
    })
    .collect()
}

const V4: [[u8; 4]; 4] = [
    [10, 0, 0, 1],
    [10, 0, 2, 1],
    [192, 168, 1, 10],
    [172, 16, 5, 4],
];
const V6: [[u8; 16]; 4] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
];

/// The network-layer packets: (name, EtherType, bytes).
fn payloads() -> Vec<(String, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let pairs4 = [(0, 1), (2, 3), (1, 0)];
    for (i, (s, d)) in pairs4.into_iter().enumerate() {
        for (name, proto, l4) in transports(i, false) {
            let name = format!("ipv4 {name} {:?}->{:?}", V4[s], V4[d]);
            out.push((name, 0x0800, ipv4(V4[s], V4[d], proto, &[], 0, &l4)));
        }
    }
    let pairs6 = [(0, 1), (2, 3), (1, 2)];
    for (i, (s, d)) in pairs6.into_iter().enumerate() {
        for (name, next, l4) in transports(i, true) {
            out.push((
                format!("ipv6 {name} #{i}"),
                0x86dd,
                ipv6(V6[s], V6[d], next, &l4),
            ));
        }
    }
    out.extend(unusual_ipv4());
    out.extend(ipv6_extensions());
    out.push(("arp request".into(), 0x0806, arp(V4[0], V4[1])));
    out.push(("arp reply".into(), 0x0806, arp(V4[1], V4[0])));
    out
}

/// Transport headers and payloads: (name, IP protocol, bytes). `variant`
/// shifts ports and sizes so that address pairs differ in more than
/// addresses.
fn transports(variant: usize, v6: bool) -> Vec<(&'static str, u8, Vec<u8>)> {
    let v = variant as u16;
    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let gtp = [0x30, 0xff, 0, 8, 0, 0, 0, 1, 0x45, 0, 0, 28];
    let (echo, echo_proto) = match v6 {
        false => (icmp(8, 0, &[0; 56]), 1),
        true => (icmp(128, 0, &[0; 56]), 58),
    };
    let mut list = vec![
        ("tcp syn", 6, tcp(40000 + v, 80, 0x02, &[])),
        ("tcp get", 6, tcp(51000 + v, 80, 0x18, http)),
        ("tcp synack", 6, tcp(443, 50000 + v, 0x12, &[])),
        ("tcp fin", 6, tcp(8080 + v, 22, 0x11, &[])),
        ("udp dns", 17, udp(1234 + v, 53, &[0; 30])),
        ("udp gtp", 17, udp(2152, 2152, &gtp)),
        ("udp big", 17, udp(1500 + 300 * v, 4789, &[7; 1200])),
        ("echo", echo_proto, echo),
        ("gre", 47, vec![0, 0, 0x08, 0]),
        ("esp", 50, vec![0, 0, 0, 1, 0, 0, 0, 1]),
    ];
    if v6 {
        list.push(("icmp6 ns", 58, icmp(135, 0, &[0; 20])));
    } else {
        list.push(("icmp reply", 1, icmp(0, 0, &[0; 8])));
    }
    list
}

/// IPv4 with options, fragments and a bad version.
fn unusual_ipv4() -> Vec<(String, u16, Vec<u8>)> {
    let udp_dns = udp(5000, 53, &[0; 20]);
    let tcp_syn = tcp(40000, 80, 0x02, &[]);
    let options = [0x94, 4, 0, 0, 1, 1, 1, 0]; // router alert, NOPs, end
    [
        (
            "ipv4 options udp",
            ipv4(V4[0], V4[1], 17, &options, 0, &udp_dns),
        ),
        (
            "ipv4 options tcp",
            ipv4(V4[2], V4[3], 6, &options[..4], 0, &tcp_syn),
        ),
        (
            "ipv4 first fragment",
            ipv4(V4[0], V4[1], 17, &[], 0x2000, &udp_dns),
        ),
        (
            "ipv4 later fragment",
            ipv4(V4[0], V4[1], 17, &[], 0x00b9, &[9; 40]),
        ),
        (
            "ipv4 dont fragment",
            ipv4(V4[3], V4[2], 6, &[], 0x4000, &tcp_syn),
        ),
        (
            "ipv4 multicast",
            ipv4(V4[0], [224, 0, 0, 251], 17, &[], 0, &udp_dns),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| (name.to_string(), 0x0800, bytes))
    .chain([(
        "ipv6 in an ipv4 frame".into(),
        0x0800,
        ipv6(V6[0], V6[1], 17, &udp_dns),
    )])
    .collect()
}

/// IPv6 with extension headers before the transport header.
fn ipv6_extensions() -> Vec<(String, u16, Vec<u8>)> {
    let udp_dns = udp(5000, 53, &[0; 20]);
    let tcp_syn = tcp(40000, 80, 0x02, &[]);
    let hop = |next: u8, rest: &[u8]| [&extension(next)[..], rest].concat();
    let fragment = |next: u8, offset: u16, rest: &[u8]| {
        let mut header = vec![next, 0];
        header.extend_from_slice(&offset.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 7]);
        [header, rest.to_vec()].concat()
    };
    let list = [
        ("hop-by-hop udp", 0, hop(17, &udp_dns)),
        ("fragment tcp", 44, fragment(6, 0x0001, &tcp_syn)),
        ("later fragment", 44, fragment(17, 0x0100, &[9; 24])),
        ("routing dstopts udp", 43, hop(60, &hop(17, &udp_dns))),
        ("hop-by-hop icmp6", 0, hop(58, &icmp(128, 0, &[0; 8]))),
    ];
    list.into_iter()
        .map(|(name, next, rest)| {
            (
                format!("ipv6 {name}"),
                0x86dd,
                ipv6(V6[0], V6[1], next, &rest),
            )
        })
        .collect()
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn ethernet(
    dst: &[u8; 6],
    src: &[u8; 6],
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = [&dst[..], &src[..]].concat();
    for (tpid, vid) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 header (checksum left 0: filters do not check it).
fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let mut packet = vec![0x40 | (header_len / 4) as u8, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34]);
    packet.extend_from_slice(&fragment.to_be_bytes());
    packet.extend_from_slice(&[64, proto, 0, 0]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(options);
    packet.extend_from_slice(payload);
    packet
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(payload);
    packet
}

/// An 8-byte IPv6 extension header (hop-by-hop, routing or destination
/// options) with padding.
fn extension(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0]
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    segment.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    segment.extend_from_slice(payload);
    segment
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut datagram = [sport.to_be_bytes(), dport.to_be_bytes(), len.to_be_bytes()].concat();
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

fn icmp(kind: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    [&[kind, code, 0, 0][..], rest].concat()
}

fn arp(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0, 1, 8, 0, 6, 4, 0, 1];
    packet.extend_from_slice(&mac(1));
    packet.extend_from_slice(&sender);
    packet.extend_from_slice(&[0; 6]);
    packet.extend_from_slice(&target);
    packet
}
