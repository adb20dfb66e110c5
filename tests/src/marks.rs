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
pub const ROBUST: [u32; 9] = [
    ATTACH_INTERRUPTED,
    ATTACH_INTERRUPTED_TTY,
    PANIC,
    SIGKILL,
    TERMINAL_LINE,
    NEXT_RUN,
    TWO_A,
    TWO_B,
    FLOOD,
];

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
            PING,
            MASKED_OUT,
        ];
        marks.extend(MASKED_IN);
        marks.extend(ROBUST);
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
