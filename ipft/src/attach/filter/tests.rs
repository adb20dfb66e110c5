//! The filter's translation, proven equal to libpcap on this kernel: for
//! every expression of [`EXPRESSIONS`] and every packet of
//! [`packets::corpus`], the translated function, run by the kernel
//! (`BPF_PROG_TEST_RUN` of a tc classifier), gives libpcap's own
//! interpreter's verdict (`pcap_offline_filter`).
//!
//! Each packet is run five ways: with the real skb the kernel builds for
//! the test run (its MAC header at the frame, all of it linear), and with a
//! made-up skb on the classifier's stack whose header offsets say: a MAC
//! header, no MAC header, a MAC header equal to the network header without
//! a length, or no header at all; the made-up skb's linear data ends where
//! the packet's bytes at hand do (before the end for the copies cut short,
//! which the kernel's test run itself refuses when an IP header is cut).
//! Needs BPF: without it the test fails.
use std::{
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use super::{call_ahead, check, classifier, packets, packets::Packet};
use crate::{
    attach::programs,
    discover::{self, KernelBtf},
    select::{pcap, Cast, Filter, SkbFields},
    sys::bpf::{self, AttachType, Insn, ProgType},
};

/// Expressions over hosts, networks, ports, protocols, IPv6, VLANs, TCP
/// flags, fragments, lengths, arithmetic and negations.
const EXPRESSIONS: &[&str] = &[
    "udp and dst host 10.0.2.1 and dst port 2152",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip6",
    "arp",
    "host 10.0.0.1",
    "src host 192.168.1.10 or dst host 172.16.5.4",
    "net 10.0.0.0/16",
    "dst net 172.16.0.0/12",
    "port 53",
    "src port 443",
    "tcp dst port 80",
    "portrange 1000-2000",
    "udp dst portrange 4000-5000",
    "ip6 and udp port 53",
    "host 2001:db8::2",
    "src net fe80::/10",
    "ip6 dst host ff02::1",
    "icmp6 and ip6[40] == 135",
    "vlan",
    "vlan 10",
    "vlan 20 and host 10.0.0.1",
    "vlan and vlan 10 and udp",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0",
    "tcp[((tcp[12] & 0xf0) >> 2):4] == 0x47455420",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0 or ip[6:2] & 0x1fff != 0",
    "ip[0] & 0xf > 5",
    "greater 200",
    "less 80",
    "len >= 60 and len <= 100",
    "not udp",
    "not (tcp or udp) and ip",
    "ip proto 47",
    "ip6 proto 50 or ip proto 50",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:03",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x88cc",
    "ip multicast",
    "icmp[icmptype] == icmp-echo",
    "udp[8] == 0x30",
    "ip[2:2] / ip[8] > 1",
    "ip[2:2] % 7 == 3",
    "(ip[9] << ip[1]) == 6",
    "(ip[0] >> (ip[9] & 0x3f)) == 1",
    "ip[8] * 3 - 100 > 50 and (ip[1] ^ 0xff) == 0xff",
    "-ip[9] & 0xff == 0xfa",
    "(ip[8] >> (ip[9] + 26)) == 0",
    "(ip[8] << (ip[9] + 26)) == 0",
    "ip[2:2] / ip[1] == 0 or udp",
    "ip[2:2] % ip[1] == 0 or udp",
];

/// How the skb presents the packet to the filter, and what libpcap must
/// say then.
#[derive(Clone, Copy, Debug)]
enum Skb {
    /// The kernel's own skb: the Ethernet program, on the bytes at hand.
    Real,
    /// A made-up skb: (MAC header, network header, mac_len).
    MadeUp(u16, u16, u16),
}

const UNSET: u16 = 0xffff;

/// The ways each packet is run.
const WAYS: [Skb; 5] = [
    Skb::Real,
    Skb::MadeUp(0, 14, 14),
    Skb::MadeUp(UNSET, 14, 0),
    Skb::MadeUp(14, 14, 0),
    Skb::MadeUp(UNSET, UNSET, 0),
];

/// libpcap's programs for one expression: Ethernet, and raw IP when the
/// expression has a raw IP form.
struct Libpcap {
    ethernet: Vec<pcap::Classic>,
    raw_ip: Option<Vec<pcap::Classic>>,
}

impl Libpcap {
    fn compile(expression: &str) -> Self {
        Libpcap {
            ethernet: pcap::compile(expression, pcap::ETHERNET).unwrap(),
            raw_ip: pcap::compile(expression, pcap::RAW_IP).ok(),
        }
    }

    /// The verdict the filter must give, by libpcap's interpreter.
    fn verdict(&self, packet: &Packet, skb: Skb) -> bool {
        let (at_hand, wire_len) = (&packet.bytes[..packet.at_hand], packet.wire_len);
        match (skb, &self.raw_ip) {
            (Skb::Real, _) => pcap::matches(&self.ethernet, &packet.bytes, wire_len),
            (Skb::MadeUp(0, _, _), _) => pcap::matches(&self.ethernet, at_hand, wire_len),
            (Skb::MadeUp(_, UNSET, _), _) | (_, None) => false,
            (_, Some(raw_ip)) => pcap::matches(raw_ip, &at_hand[14..], wire_len - 14),
        }
    }
}

#[test]
fn the_kernel_gives_libpcap_verdicts() {
    bpf::fake::use_the_kernel();
    let kernel = KernelBtf::load(Path::new(crate::cli::SYS_BTF_DIR), false).unwrap();
    let needs = discover::Needs {
        skb_fields: true,
        ..Default::default()
    };
    let layout = discover::KernelLayout::read(&kernel.vmlinux, needs).unwrap();
    let skb = layout.skb_fields.as_ref().unwrap();
    let probe_read = SkbFields::find(|name| skb.get(name)).unwrap();
    // Every way of reading the skb and the packet this kernel allows:
    // bpf_probe_read_kernel; the fields through bpf_rdonly_cast and the
    // packet copied; both through bpf_rdonly_cast.
    let mut reads = vec![("bpf_probe_read_kernel", probe_read)];
    if let Some(ids) = layout.cast {
        let cast = |bytes, bytes_len| Cast {
            func: ids.func,
            skb: ids.skb,
            bytes,
            bytes_len,
        };
        let fields = Some(cast(None, 0));
        reads.push((
            "fields cast",
            SkbFields {
                cast: fields,
                ..probe_read
            },
        ));
        let bytes = ids.bytes.expect("a struct beginning with a byte array");
        // Each packet load casting its own address; then constant loads
        // through the start, cast once (as far as this kernel's array goes).
        for (name, len) in [
            ("packet cast per load", 0),
            ("packet cast once", ids.bytes_len),
        ] {
            reads.push((
                name,
                SkbFields {
                    cast: Some(cast(Some(bytes), len)),
                    ..probe_read
                },
            ));
        }
    }
    let packets = packets::corpus();
    assert!(packets.len() >= 200, "{} packets", packets.len());
    let (mut runs, mut wrong, mut one_sided) = (0, Vec::new(), Vec::new());
    for ((read, fields), expression) in reads
        .iter()
        .flat_map(|r| EXPRESSIONS.iter().map(move |e| (r, e)))
    {
        let libpcap = Libpcap::compile(expression);
        let filter = Filter::compile(expression)
            .unwrap()
            .translate(fields)
            .unwrap();
        let real = load(&classifier(&filter));
        let made_up = load(&made_up_skb(&filter, fields));
        let mut seen = [false; 2];
        for packet in &packets {
            for skb in WAYS {
                let want = libpcap.verdict(packet, skb);
                seen[usize::from(want)] = true;
                let got = match skb {
                    Skb::Real => run(&real, &packet.bytes, &[]),
                    Skb::MadeUp(mac, network, mac_len) => {
                        let (len, tail) = (packet.wire_len, packet.at_hand as u32);
                        let cb = [mac.into(), network.into(), mac_len.into(), len, tail];
                        run(&made_up, &packet.bytes, &context(cb))
                    }
                };
                runs += 1;
                if got != want {
                    wrong.push(format!(
                        "{expression:?} on {} ({skb:?}, {read}): libpcap {want}, ipft {got}",
                        packet.name
                    ));
                }
            }
        }
        if seen != [true, true] {
            one_sided.push(*expression);
        }
    }
    println!(
        "{} expressions x {} packets x {} ways x {} skb reads: {runs} runs, {} differ",
        EXPRESSIONS.len(),
        packets.len(),
        WAYS.len(),
        reads.len(),
        wrong.len()
    );
    assert_eq!(
        one_sided, [""; 0],
        "these match every packet or none: the corpus cannot test them"
    );
    assert!(
        wrong.is_empty(),
        "{} of {runs} verdicts differ:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
}

#[test]
fn a_filter_the_verifier_refuses_is_reported_with_its_length() {
    bpf::fake::use_the_kernel();
    // r0 is returned unset.
    let err = check(&[Insn::exit()]).unwrap_err().to_string();
    let start =
        "the kernel refuses the filter's 1 eBPF instructions (Permission denied (os error 13)): ";
    assert!(err.starts_with(start), "{err}");
    assert!(err.contains("R0 !read_ok"), "{err}");
}

#[test]
fn the_corpus_is_big_enough() {
    assert!(EXPRESSIONS.len() >= 30);
    let packets = packets::corpus();
    assert!(packets.len() >= 200);
    assert!(
        packets.iter().any(|p| p.at_hand < p.bytes.len()),
        "some are cut short"
    );
    assert!(
        packets.iter().all(|p| p.bytes.len() >= 14),
        "BPF_PROG_TEST_RUN wants an Ethernet header"
    );
}

fn load(insns: &[Insn]) -> OwnedFd {
    let program = bpf::Program {
        prog_type: ProgType::SchedCls,
        expected_attach_type: AttachType::None,
        name: "ipft_filter_test",
        insns,
        license: c"GPL",
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    programs::load(&program)
        .unwrap_or_else(|(err, log)| panic!("the kernel refuses the filter ({err}): {log}"))
}

fn run(program: &OwnedFd, packet: &[u8], context: &[u8]) -> bool {
    match bpf::prog_test_run(program.as_fd(), packet, context) {
        Ok(verdict) => verdict != 0,
        Err(err) => panic!("BPF_PROG_TEST_RUN failed: {err} (context {context:?})"),
    }
}

/// A `struct __sk_buff` up to its `cb` array, with `cb` set: the only
/// field of a test run's context the made-up skb reads.
fn context(cb: [u32; 5]) -> Vec<u8> {
    let mut context = vec![0; CB];
    context.extend(cb.iter().flat_map(|word| word.to_ne_bytes()));
    context
}

/// Offsets in `struct __sk_buff` (include/uapi/linux/bpf.h).
const CB: usize = 48;
const DATA: i16 = 76;

/// A classifier that gives the filter a made-up skb on its stack: `head`
/// and `data` at the packet, and the MAC header, network header,
/// `mac_len`, `len` and `tail` from the context's `cb[0..5]`.
fn made_up_skb(filter: &[Insn], skb: &SkbFields) -> Vec<Insn> {
    let ends = [
        skb.head + 8,
        skb.data + 8,
        skb.len + 4,
        skb.tail + 4,
        skb.mac_header + 2,
    ];
    let ends = ends
        .into_iter()
        .chain([skb.network_header + 2, skb.mac_len + 2]);
    let size = ends.max().unwrap().next_multiple_of(8) as i16;
    let at = |field: u32| field as i16 - size;
    let mut insns = vec![
        ldx(W, 2, 1, DATA),
        stx(DW, at(skb.head), 2),
        stx(DW, at(skb.data), 2),
    ];
    let from_cb = [
        (skb.mac_header, H),
        (skb.network_header, H),
        (skb.mac_len, H),
        (skb.len, W),
        (skb.tail, W),
    ];
    for (i, (field, width)) in from_cb.into_iter().enumerate() {
        insns.push(ldx(W, 3, 1, (CB + 4 * i) as i16));
        insns.push(stx(width, at(field), 3));
    }
    insns.push(Insn {
        code: 0xbf,
        regs: 10 << 4 | 1,
        off: 0,
        imm: 0,
    }); // r1 = r10
    insns.push(Insn {
        code: 0x07,
        regs: 1,
        off: 0,
        imm: (-size).into(),
    }); // r1 += -size
    insns.push(call_ahead(1));
    insns.push(Insn::exit());
    insns.extend_from_slice(filter);
    insns
}

const W: u8 = 0x00;
const H: u8 = 0x08;
const DW: u8 = 0x18;

/// `dst = *(size *)(src + off)`.
fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn {
        code: 0x61 | size,
        regs: src << 4 | dst,
        off,
        imm: 0,
    }
}

/// `*(size *)(r10 + off) = src`.
fn stx(size: u8, off: i16, src: u8) -> Insn {
    Insn {
        code: 0x63 | size,
        regs: src << 4 | 10,
        off,
        imm: 0,
    }
}
