//! Every test's mark, in one place.
//!
//! Tests in a binary run in parallel threads, each with its own ipft. An ipft
//! sees every packet in the kernel, so each test owns a mark no other test
//! sends, and `MASKED` (matched under a mask) owns a whole 16-bit range.
//! The unit test below keeps this true as tests are added.

pub const UDP_AGGREGATE: u32 = 0x10001;
/// Sent concurrently with `UDP_AGGREGATE` to prove other marks stay out.
pub const UDP_OTHER: u32 = 0x10002;
pub const JSON: u32 = 0x10003;
pub const SIGTERM: u32 = 0x10004;
pub const DECIMAL: u32 = 0x10005;
pub const OCTAL: u32 = 0x10006;
pub const REGEX: u32 = 0x10007;
pub const CLOSED_STDOUT: u32 = 0x10008;
pub const CLEANUP: u32 = 0x10009;
pub const NOT_ROOT: u32 = 0x1000a;
pub const LOST: u32 = 0x1000b;
pub const TTY: u32 = 0x1000c;
/// filter.rs: `-m` with `-f`.
pub const FILTER_AND_MARK: u32 = 0x1000d;
/// selectors.rs: `-m` with `--dev`.
pub const DEV_AND_MARK: u32 = 0x1000e;
/// script.rs and packet.rs (scriptable runs, following the packet).
pub const COMMAND: u32 = 0x20001;
pub const COMMAND_JSON: u32 = 0x20002;
pub const COMMAND_FAILS: u32 = 0x20003;
pub const DURATION: u32 = 0x20004;
pub const MAX_TRACES_JSON: u32 = 0x20005;
pub const MAX_TRACES_TABLE: u32 = 0x20006;
pub const OUTPUT_JSON_FILE: u32 = 0x20007;
pub const OUTPUT_TABLE_FILE: u32 = 0x20008;
pub const OUTPUT_FORCE: u32 = 0x20009;
pub const READY_FILE: u32 = 0x2000a;
pub const PROBE_SERVER: u32 = 0x2000b;
pub const RUNTIME_FAILURE: u32 = 0x2000c;
pub const PLAIN_STDERR: u32 = 0x2000d;
pub const TTY_CR: u32 = 0x2000e;
pub const NO_COLOR: u32 = 0x2000f;
pub const README_CI: u32 = 0x20010;
pub const NO_SOCKET: u32 = 0x20011;
pub const NO_SOCKET_JSON: u32 = 0x20012;
pub const NETFILTER_OUTPUT: u32 = 0x20013;
pub const NETFILTER_INPUT: u32 = 0x20014;
pub const SUMMARY: u32 = 0x20015;
pub const SUMMARY_V6: u32 = 0x20016;
pub const FIELDS: u32 = 0x20017;
pub const TRACK: u32 = 0x20018;
pub const FREED_REUSED: u32 = 0x20019;
/// backends.rs: datagrams read one after another.
pub const READ_REUSED: u32 = 0x2001a;
/// fate.rs: how each packet ended, and where it was dropped.
pub const FATE_DELIVERED: u32 = 0x2001b;
pub const FATE_NO_SOCKET: u32 = 0x2001c;
pub const FATE_NFT_DROP: u32 = 0x2001d;
pub const FATE_JSON: u32 = 0x2001e;
/// pcapng.rs: `-w`, read back with tshark.
pub const PCAP_UDP: u32 = 0x50001;
pub const PCAP_POINTS: u32 = 0x50002;
pub const PCAP_NETNS: u32 = 0x50003;
pub const PCAP_DROP: u32 = 0x50004;
pub const PCAP_STREAM: u32 = 0x50005;
pub const PCAP_ENDINGS: u32 = 0x50006;
pub const PCAP_CLOSED: u32 = 0x50007;
pub const PCAP_LOST: u32 = 0x50008;
/// pipes.rs: command mode with ipft's stdout piped into its reader.
pub const PIPE_PCAPNG: u32 = 0x60001;
pub const PIPE_JSON: u32 = 0x60002;
/// ping's README example: 1431655765. No other test sends it.
pub const PING: u32 = 0x5555_5555;

/// `-m MASKED_FILTER --mask MASKED_MASK` catches `MASKED_IN`, not `MASKED_OUT`.
pub const MASKED_FILTER: u32 = 0x7a_0000;
pub const MASKED_MASK: u32 = 0xffff_0000;
pub const MASKED_IN: [u32; 2] = [0x7a_0001, 0x7a_0002];
pub const MASKED_OUT: u32 = 0x7b_0001;

/// robust.rs and flood.rs: teardown, bad input, two tracers, a flood.
pub const ATTACH_INTERRUPTED: u32 = 0x30001;
pub const ATTACH_INTERRUPTED_TTY: u32 = 0x30002;
pub const PANIC: u32 = 0x30003;
pub const SIGKILL: u32 = 0x30004;
pub const TERMINAL_LINE: u32 = 0x30005;
pub const NEXT_RUN: u32 = 0x30006;
pub const TWO_A: u32 = 0x30007;
pub const TWO_B: u32 = 0x30008;
pub const FLOOD: u32 = 0x30009;
pub const BACKGROUND: u32 = 0x3000a;
pub const ROBUST: [u32; 10] = [
    ATTACH_INTERRUPTED,
    ATTACH_INTERRUPTED_TTY,
    PANIC,
    SIGKILL,
    TERMINAL_LINE,
    NEXT_RUN,
    TWO_A,
    TWO_B,
    FLOOD,
    BACKGROUND,
];

/// backends.rs: what `auto` picks, each backend, function_graph.
pub const AUTO: u32 = 0x40001;
pub const EACH_BACKEND: u32 = 0x40002;
pub const GRAPH: u32 = 0x40003;

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<u32> {
        let mut marks = vec![
            UDP_AGGREGATE,
            UDP_OTHER,
            JSON,
            SIGTERM,
            DECIMAL,
            OCTAL,
            REGEX,
            CLOSED_STDOUT,
            CLEANUP,
            NOT_ROOT,
            LOST,
            TTY,
            FILTER_AND_MARK,
            DEV_AND_MARK,
            PING,
            COMMAND,
            COMMAND_JSON,
            COMMAND_FAILS,
            DURATION,
            MAX_TRACES_JSON,
            MAX_TRACES_TABLE,
            OUTPUT_JSON_FILE,
            OUTPUT_TABLE_FILE,
            OUTPUT_FORCE,
            READY_FILE,
            PROBE_SERVER,
            RUNTIME_FAILURE,
            PLAIN_STDERR,
            TTY_CR,
            NO_COLOR,
            README_CI,
            NO_SOCKET,
            NO_SOCKET_JSON,
            NETFILTER_OUTPUT,
            NETFILTER_INPUT,
            SUMMARY,
            SUMMARY_V6,
            FIELDS,
            TRACK,
            FREED_REUSED,
            READ_REUSED,
            FATE_DELIVERED,
            FATE_NO_SOCKET,
            FATE_NFT_DROP,
            FATE_JSON,
            PCAP_UDP,
            PCAP_POINTS,
            PCAP_NETNS,
            PCAP_DROP,
            PCAP_STREAM,
            PCAP_ENDINGS,
            PCAP_CLOSED,
            PCAP_LOST,
            PIPE_PCAPNG,
            PIPE_JSON,
            MASKED_OUT,
        ];
        marks.extend(MASKED_IN);
        marks.extend(ROBUST);
        marks.extend([AUTO, EACH_BACKEND, GRAPH]);
        marks
    }

    #[test]
    fn marks_are_unique() {
        let mut marks = all();
        marks.sort();
        marks.dedup();
        assert_eq!(marks.len(), all().len(), "two tests share a mark");
    }

    #[test]
    fn only_masked_marks_match_the_mask() {
        for mark in all() {
            let inside = mark & MASKED_MASK == MASKED_FILTER & MASKED_MASK;
            assert_eq!(inside, MASKED_IN.contains(&mark), "mark {mark:#x}");
        }
    }
}
