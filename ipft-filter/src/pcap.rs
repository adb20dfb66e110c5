//! libpcap's filter compiler (the `libpcap` feature: libpcap.a is linked
//! in, see build.rs): an expression in pcap-filter syntax becomes a classic
//! BPF program for one link type, compiled on a "dead" handle, so no
//! capture is ever opened; and libpcap's interpreter ([`matches`]), the
//! reference the translation is tested against.
//!
//! Host, network, port and protocol names are looked up by glibc, which is
//! linked statically: its built-in sources (`files`: /etc/hosts,
//! /etc/services, /etc/protocols, /etc/networks, /etc/ethers; `dns`) work
//! anywhere; a source nsswitch.conf names besides those (sss, systemd,
//! mdns…) is a shared library a static program can load only from the glibc
//! it was built with. Numbers need no look-up.
use std::{
    ffi::{c_char, c_int, c_uint, c_void, CStr, CString},
    sync::Mutex,
};

/// `DLT_EN10MB`: the packet starts at its Ethernet header.
pub const ETHERNET: c_int = 1;
/// `DLT_RAW` (Linux's value): the packet starts at its IP header.
pub const RAW_IP: c_int = 12;

/// The largest snapshot length libpcap knows: a matching classic program
/// returns it.
const SNAPLEN: c_int = 262_144;

/// `PCAP_NETMASK_UNKNOWN`: expressions that need the capture's netmask
/// (`ip broadcast`) are refused.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

pub use crate::cbpf::Classic;

/// libpcap's `struct bpf_program`.
#[repr(C)]
struct Program {
    len: c_uint,
    insns: *mut Classic,
}

/// libpcap's `struct pcap_pkthdr`.
#[repr(C)]
struct PacketHeader {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut c_void;
    fn pcap_close(p: *mut c_void);
    fn pcap_compile(
        p: *mut c_void,
        program: *mut Program,
        expression: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut c_void) -> *const c_char;
    fn pcap_freecode(program: *mut Program);
    fn pcap_offline_filter(
        program: *const Program,
        header: *const PacketHeader,
        packet: *const u8,
    ) -> c_int;
}

/// Compiles `expression` for packets of `linktype`, optimised as tcpdump
/// does. The error is libpcap's own message.
pub fn compile(expression: &str, linktype: c_int) -> Result<Vec<Classic>, String> {
    let text = CString::new(expression).map_err(|_| "it contains a NUL byte".to_string())?;
    // The grammar's state and gethostbyname are not thread-safe in every
    // libpcap: one compilation at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a dead handle needs no device; it is closed below.
    let handle = unsafe { pcap_open_dead(linktype, SNAPLEN) };
    if handle.is_null() {
        return Err("libpcap cannot open a handle to compile with".into());
    }
    let mut program = Program {
        len: 0,
        insns: std::ptr::null_mut(),
    };
    // SAFETY: handle and text are live; on success libpcap fills
    // `program`, whose instructions are copied and then freed.
    let result = unsafe {
        match pcap_compile(handle, &mut program, text.as_ptr(), 1, NETMASK_UNKNOWN) {
            0 => {
                let insns = std::slice::from_raw_parts(program.insns, program.len as usize);
                let insns = insns.to_vec();
                pcap_freecode(&mut program);
                Ok(insns)
            }
            _ => Err(CStr::from_ptr(pcap_geterr(handle))
                .to_string_lossy()
                .into_owned()),
        }
    };
    // SAFETY: opened above, used no more.
    unsafe { pcap_close(handle) };
    result
}

/// libpcap's own interpreter's verdict on a packet of `wire_len` bytes of
/// which `captured` are at hand: the reference the translation is tested
/// against.
pub fn matches(program: &[Classic], captured: &[u8], wire_len: u32) -> bool {
    let program = Program {
        len: program.len() as c_uint,
        insns: program.as_ptr().cast_mut(),
    };
    let header = PacketHeader {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: captured.len() as u32,
        len: wire_len,
    };
    // SAFETY: the interpreter only reads the program, header and packet,
    // all live for the call.
    unsafe { pcap_offline_filter(&program, &header, captured.as_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_becomes_a_classic_program() {
        let program = compile("udp and dst port 2152", ETHERNET).unwrap();
        // It starts by reading the EtherType (ldh [12]) and ends with both
        // verdicts: accept (the snapshot length) and reject.
        assert_eq!((program[0].code, program[0].k), (0x28, 12));
        let last = &program[program.len() - 2..];
        assert_eq!(
            last[0],
            Classic {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 262_144
            }
        );
        assert_eq!(
            last[1],
            Classic {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0
            }
        );
        // Raw IP has no link header: the IP version is read first.
        let raw = compile("udp", RAW_IP).unwrap();
        assert_eq!((raw[0].code, raw[0].k), (0x30, 0));
    }

    #[test]
    fn libpcap_says_what_is_wrong() {
        let err = compile("tcp port 80 and", ETHERNET).unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
        let err = compile("ether host 1:2:3:4:5:6", RAW_IP).unwrap_err();
        assert!(
            err.starts_with("ethernet addresses supported only on"),
            "{err}"
        );
        assert!(compile("udp\0", ETHERNET).is_err());
    }

    #[test]
    fn the_interpreter_gives_libpcap_verdicts() {
        let program = compile("greater 100", ETHERNET).unwrap();
        assert!(matches(&program, &[0; 20], 100));
        assert!(!matches(&program, &[0; 20], 99));
    }
}
