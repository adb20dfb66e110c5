//! Classic BPF, as libpcap's compiler writes it, decoded into typed
//! operations ([`Op`]) for the translation to eBPF (`translate.rs`).
//! Decoding checks everything the translation relies on: known opcodes,
//! scratch slots that exist, jumps that go forward and stay inside the
//! program. What it refuses is named in one phrase. Classic programs come
//! from libpcap's compiler (`pcap.rs`, with the `libpcap` feature).

/// One classic BPF instruction, as the kernel's and libpcap's
/// `struct bpf_insn` (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classic {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The longest classic program ipft takes, as the kernel's own limit for
/// classic BPF (`BPF_MAXINSNS`).
pub const MAX_CLASSIC: usize = 4096;

/// Scratch memory words (`BPF_MEMWORDS`).
pub const SCRATCH_WORDS: u32 = 16;

/// Packet loads at `SKF_AD_OFF` (-0x1000) and above read Linux socket
/// metadata, not packet bytes; libpcap writes them only for live captures.
const ANCILLARY: u32 = 0xffff_f000;

/// Bytes a packet load reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Byte = 1,
    Half = 2,
    Word = 4,
}

/// The classic machine's two registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    A,
    X,
}

/// The second operand of an ALU operation or a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    K(u32),
    X,
}

/// ALU operations on A. Their values are the operation bits of both
/// classic BPF and eBPF, which share them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Mod = 0x90,
    Xor = 0xa0,
}

/// Comparisons of a conditional jump (unsigned, 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    Eq,
    Gt,
    Ge,
    /// `A & src != 0`.
    Set,
}

/// What a program returns: the classic program's value only says match
/// (non-zero) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Match,
    NoMatch,
    /// Match when A is non-zero.
    A,
}

/// One classic instruction. Jump targets are indices into the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A = the packet's bytes at `k`, big-endian.
    LoadAbs(Size, u32),
    /// A = the packet's bytes at X + `k`, big-endian.
    LoadInd(Size, u32),
    /// X = 4 * (the packet's byte at `k` & 0xf): an IPv4 header's length.
    LoadHeaderLen(u32),
    /// reg = constant.
    Imm(Reg, u32),
    /// reg = scratch word.
    Mem(Reg, u32),
    /// reg = the packet's length.
    Len(Reg),
    /// scratch word = reg.
    Store(Reg, u32),
    Alu(Alu, Src),
    /// A = -A.
    Neg,
    /// X = A (`tax`) or A = X (`txa`): the register written.
    Copy(Reg),
    Jump(usize),
    Branch {
        test: Test,
        src: Src,
        yes: usize,
        no: usize,
    },
    Return(Verdict),
}

impl Op {
    /// Whether the next instruction can run after this one.
    pub fn falls_through(&self) -> bool {
        !matches!(self, Op::Jump(_) | Op::Branch { .. } | Op::Return(_))
    }

    /// The packet length is read.
    pub fn reads_len(&self) -> bool {
        matches!(self, Op::Len(_))
    }

    /// Bytes of the packet are read.
    pub fn loads_packet(&self) -> bool {
        matches!(
            self,
            Op::LoadAbs(..) | Op::LoadInd(..) | Op::LoadHeaderLen(_)
        )
    }
}

/// Decodes a program libpcap compiled; the error names what ipft cannot
/// translate.
pub fn decode(program: &[Classic]) -> Result<Vec<Op>, String> {
    if program.len() > MAX_CLASSIC {
        return Err(format!(
            "{} classic BPF instructions, more than the {MAX_CLASSIC} ipft takes",
            program.len()
        ));
    }
    let ops = program
        .iter()
        .enumerate()
        .map(|(at, insn)| decode_one(insn, at + 1, program.len()))
        .collect::<Result<Vec<Op>, String>>()?;
    if ops.is_empty() {
        return Err("an empty classic BPF program".into());
    }
    Ok(ops)
}

/// Classic BPF instruction classes.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

/// One instruction; `next` is the index after it, `len` the program's.
fn decode_one(insn: &Classic, next: usize, len: usize) -> Result<Op, String> {
    let unknown = || format!("the classic BPF instruction {:#06x}", insn.code);
    let op = match insn.code & 0x07 {
        LD | LDX => load(insn).ok_or_else(unknown)?,
        ST => Op::Store(Reg::A, insn.k),
        STX => Op::Store(Reg::X, insn.k),
        ALU => alu(insn).ok_or_else(unknown)?,
        JMP => jump(insn, next, len)?.ok_or_else(unknown)?,
        RET => match insn.code & 0x18 {
            0x00 if insn.k == 0 => Op::Return(Verdict::NoMatch),
            0x00 => Op::Return(Verdict::Match),
            0x10 => Op::Return(Verdict::A),
            _ => return Err(unknown()),
        },
        MISC => match insn.code & 0xf8 {
            0x00 => Op::Copy(Reg::X),
            0x80 => Op::Copy(Reg::A),
            _ => return Err(unknown()),
        },
        _ => unreachable!("three class bits"),
    };
    match op {
        Op::Mem(_, k) | Op::Store(_, k) if k >= SCRATCH_WORDS => Err(format!("scratch word {k}")),
        Op::LoadAbs(_, k) | Op::LoadInd(_, k) | Op::LoadHeaderLen(k) if k >= ANCILLARY => {
            Err(format!(
                "a Linux ancillary data load (SKF_AD_OFF + {})",
                k - ANCILLARY
            ))
        }
        op => Ok(op),
    }
}

fn size(code: u16) -> Option<Size> {
    match code & 0x18 {
        0x00 => Some(Size::Word),
        0x08 => Some(Size::Half),
        0x10 => Some(Size::Byte),
        _ => None,
    }
}

/// `ld` and `ldx` in their modes: immediate, absolute, indirect, scratch,
/// length, and `ldx 4*([k]&0xf)`.
fn load(insn: &Classic) -> Option<Op> {
    let reg = match insn.code & 0x07 {
        LD => Reg::A,
        _ => Reg::X,
    };
    let word = size(insn.code)? == Size::Word;
    Some(match (reg, insn.code & 0xe0) {
        (_, 0x00) if word => Op::Imm(reg, insn.k),
        (Reg::A, 0x20) => Op::LoadAbs(size(insn.code)?, insn.k),
        (Reg::A, 0x40) => Op::LoadInd(size(insn.code)?, insn.k),
        (_, 0x60) if word => Op::Mem(reg, insn.k),
        (_, 0x80) if word => Op::Len(reg),
        (Reg::X, 0xa0) if size(insn.code)? == Size::Byte => Op::LoadHeaderLen(insn.k),
        _ => return None,
    })
}

fn alu(insn: &Classic) -> Option<Op> {
    let src = match insn.code & 0x08 {
        0 => Src::K(insn.k),
        _ => Src::X,
    };
    let op = match insn.code & 0xf0 {
        0x00 => Alu::Add,
        0x10 => Alu::Sub,
        0x20 => Alu::Mul,
        0x30 => Alu::Div,
        0x40 => Alu::Or,
        0x50 => Alu::And,
        0x60 => Alu::Lsh,
        0x70 => Alu::Rsh,
        0x80 => return Some(Op::Neg),
        0x90 => Alu::Mod,
        0xa0 => Alu::Xor,
        _ => return None,
    };
    Some(Op::Alu(op, src))
}

/// `ja` and the conditional jumps, whose targets must lie ahead, inside
/// the program (libpcap's `protochain` loops backwards: eBPF would need a
/// bounded loop).
fn jump(insn: &Classic, next: usize, len: usize) -> Result<Option<Op>, String> {
    let target = |offset: u32| {
        if (offset as i32) < 0 {
            return Err("a backward jump (libpcap's protochain)".to_string());
        }
        match next.checked_add(offset as usize).filter(|&t| t < len) {
            Some(t) => Ok(t),
            None => Err("a jump past the end of the program".to_string()),
        }
    };
    let test = match insn.code & 0xf0 {
        0x00 => return Ok(Some(Op::Jump(target(insn.k)?))),
        0x10 => Test::Eq,
        0x20 => Test::Gt,
        0x30 => Test::Ge,
        0x40 => Test::Set,
        _ => return Ok(None),
    };
    let src = match insn.code & 0x08 {
        0 => Src::K(insn.k),
        _ => Src::X,
    };
    Ok(Some(Op::Branch {
        test,
        src,
        yes: target(u32::from(insn.jt))?,
        no: target(u32::from(insn.jf))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Classic {
        Classic { code, jt, jf, k }
    }

    #[test]
    fn every_mode_libpcap_writes_decodes() {
        let program = [
            insn(0x28, 0, 0, 12),     // ldh [12]
            insn(0x50, 0, 0, 14),     // ldb [x + 14]
            insn(0xb1, 0, 0, 14),     // ldxb 4*([14]&0xf)
            insn(0x00, 0, 0, 7),      // ld #7
            insn(0x61, 0, 0, 3),      // ldx M[3]
            insn(0x80, 0, 0, 0),      // ld #len
            insn(0x03, 0, 0, 2),      // stx M[2]
            insn(0x5c, 0, 0, 0),      // and x
            insn(0x64, 0, 0, 2),      // lsh #2
            insn(0x84, 0, 0, 0),      // neg
            insn(0x87, 0, 0, 0),      // txa
            insn(0x45, 1, 0, 0x1fff), // jset #0x1fff, jt +1
            insn(0x05, 0, 0, 0),      // ja +0
            insn(0x16, 0, 0, 0),      // ret a
        ];
        let ops = decode(&program).unwrap();
        assert_eq!(
            ops,
            [
                Op::LoadAbs(Size::Half, 12),
                Op::LoadInd(Size::Byte, 14),
                Op::LoadHeaderLen(14),
                Op::Imm(Reg::A, 7),
                Op::Mem(Reg::X, 3),
                Op::Len(Reg::A),
                Op::Store(Reg::X, 2),
                Op::Alu(Alu::And, Src::X),
                Op::Alu(Alu::Lsh, Src::K(2)),
                Op::Neg,
                Op::Copy(Reg::A),
                Op::Branch {
                    test: Test::Set,
                    src: Src::K(0x1fff),
                    yes: 13,
                    no: 12
                },
                Op::Jump(13),
                Op::Return(Verdict::A),
            ]
        );
    }

    #[test]
    fn what_cannot_be_translated_is_named() {
        let refused = |program: &[Classic]| decode(program).unwrap_err();
        assert_eq!(
            refused(&[insn(0x05, 0, 0, u32::MAX - 3), insn(0x06, 0, 0, 0)]),
            "a backward jump (libpcap's protochain)"
        );
        assert_eq!(
            refused(&[insn(0x15, 1, 0, 0), insn(0x06, 0, 0, 0)]),
            "a jump past the end of the program"
        );
        assert_eq!(refused(&[insn(0x02, 0, 0, 16)]), "scratch word 16");
        assert_eq!(
            refused(&[insn(0x30, 0, 0, 0xffff_f000 + 44)]),
            "a Linux ancillary data load (SKF_AD_OFF + 44)"
        );
        assert_eq!(
            refused(&[insn(0x0e, 0, 0, 0)]),
            "the classic BPF instruction 0x000e"
        );
        assert!(refused(&vec![insn(0x06, 0, 0, 0); MAX_CLASSIC + 1]).starts_with("4097 classic"));
    }

    #[cfg(feature = "libpcap")]
    #[test]
    fn protochain_is_refused_as_a_backward_jump() {
        let program = crate::pcap::compile("ip6 protochain 6", crate::pcap::ETHERNET).unwrap();
        assert_eq!(
            decode(&program).unwrap_err(),
            "a backward jump (libpcap's protochain)"
        );
    }
}
