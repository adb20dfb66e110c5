//! eBPF instructions: the one type ipft writes, relocates and loads them as
//! ([`Insn`]: the kernel's `struct bpf_insn`), the opcode bits, and the
//! constructors the filter's translation and ipft's loader build them with.
//! Layout, opcodes, pseudo sources and helper ids all come from
//! `aya_obj::generated` (bindgen's copy of include/uapi/linux/bpf.h); only
//! their narrowing to the 8-bit `code` and 4-bit registers is written here.
use std::fmt;

use aya_obj::generated::{self as uapi, bpf_func_id, bpf_insn};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn` (a
/// slice of them is what `BPF_PROG_LOAD` reads).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Insn(bpf_insn);

impl Insn {
    /// The instruction `code` with registers `dst` and `src`, offset `off`
    /// and immediate `imm`.
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn(bpf_insn {
            code,
            _bitfield_align_1: [],
            _bitfield_1: bpf_insn::new_bitfield_1(dst, src),
            off,
            imm,
        })
    }

    pub fn code(&self) -> u8 {
        self.0.code
    }

    pub fn dst(&self) -> u8 {
        self.0.dst_reg()
    }

    pub fn src(&self) -> u8 {
        self.0.src_reg()
    }

    pub fn off(&self) -> i16 {
        self.0.off
    }

    pub fn imm(&self) -> i32 {
        self.0.imm
    }

    /// The same instruction with offset `off` (a jump's, once its target
    /// is known).
    pub fn with_off(mut self, off: i16) -> Self {
        self.0.off = off;
        self
    }

    /// A call of helper `id` (not a kfunc, not a call of the program's own
    /// functions).
    pub fn calls_helper(&self, id: i32) -> bool {
        self.code() == JMP | CALL && self.src() == 0 && self.imm() == id
    }

    /// A call whose `src_reg` is `kind` ([`PSEUDO_CALL`],
    /// [`PSEUDO_KFUNC_CALL`]).
    pub fn is_call(&self, kind: u8) -> bool {
        self.code() == JMP | CALL && self.src() == kind
    }
}

impl PartialEq for Insn {
    fn eq(&self, other: &Self) -> bool {
        let fields = |i: &Insn| (i.code(), i.dst(), i.src(), i.off(), i.imm());
        fields(self) == fields(other)
    }
}

impl Eq for Insn {}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Insn")
            .field("code", &format_args!("{:#04x}", self.code()))
            .field("dst", &self.dst())
            .field("src", &self.src())
            .field("off", &self.off())
            .field("imm", &self.imm())
            .finish()
    }
}

impl From<&bpf_insn> for Insn {
    fn from(insn: &bpf_insn) -> Self {
        Insn(*insn)
    }
}

impl From<&Insn> for bpf_insn {
    fn from(insn: &Insn) -> Self {
        insn.0
    }
}

// Opcode bits (include/uapi/linux/bpf_common.h, bpf.h), narrowed to `code`.
// Classes:
pub const LDX: u8 = uapi::BPF_LDX as u8;
pub const ST: u8 = uapi::BPF_ST as u8;
pub const STX: u8 = uapi::BPF_STX as u8;
pub const ALU: u8 = uapi::BPF_ALU as u8;
pub const JMP: u8 = uapi::BPF_JMP as u8;
pub const JMP32: u8 = uapi::BPF_JMP32 as u8;
pub const ALU64: u8 = uapi::BPF_ALU64 as u8;
/// The source is `src_reg` (else the immediate).
pub const SRC_X: u8 = uapi::BPF_X as u8;
// Memory mode and sizes:
pub const MEM: u8 = uapi::BPF_MEM as u8;
pub const W: u8 = uapi::BPF_W as u8;
pub const H: u8 = uapi::BPF_H as u8;
pub const B: u8 = uapi::BPF_B as u8;
pub const DW: u8 = uapi::BPF_DW as u8;
// ALU operations (those the translation writes other than through
// `cbpf::Alu`, whose values are the same bits):
pub const ADD: u8 = uapi::BPF_ADD as u8;
pub const SUB: u8 = uapi::BPF_SUB as u8;
pub const NEG: u8 = uapi::BPF_NEG as u8;
pub const MOV: u8 = uapi::BPF_MOV as u8;
pub const END: u8 = uapi::BPF_END as u8;
/// With END: convert to big-endian (a swap on x86_64).
pub const TO_BE: u8 = uapi::BPF_TO_BE as u8;
// Jump operations:
pub const JA: u8 = uapi::BPF_JA as u8;
pub const JEQ: u8 = uapi::BPF_JEQ as u8;
pub const JGT: u8 = uapi::BPF_JGT as u8;
pub const JGE: u8 = uapi::BPF_JGE as u8;
pub const JSET: u8 = uapi::BPF_JSET as u8;
pub const JNE: u8 = uapi::BPF_JNE as u8;
pub const CALL: u8 = uapi::BPF_CALL as u8;
pub const EXIT: u8 = uapi::BPF_EXIT as u8;
pub const JLT: u8 = uapi::BPF_JLT as u8;
pub const JLE: u8 = uapi::BPF_JLE as u8;

/// `src_reg` of a call to a function of the program itself.
pub const PSEUDO_CALL: u8 = uapi::BPF_PSEUDO_CALL as u8;
/// `src_reg` of a call to a kernel function (kfunc) by its BTF id.
pub const PSEUDO_KFUNC_CALL: u8 = uapi::BPF_PSEUDO_KFUNC_CALL as u8;

/// `bpf_probe_read_kernel(dst, size, unsafe_ptr)`.
pub const PROBE_READ_KERNEL: i32 = bpf_func_id::BPF_FUNC_probe_read_kernel as i32;

/// The frame pointer, r10.
pub const FP: u8 = 10;

pub fn mov64(dst: u8, src: u8) -> Insn {
    Insn::new(ALU64 | MOV | SRC_X, dst, src, 0, 0)
}

pub fn mov64_imm(dst: u8, imm: i32) -> Insn {
    Insn::new(ALU64 | MOV, dst, 0, 0, imm)
}

pub fn mov32(dst: u8, src: u8) -> Insn {
    Insn::new(ALU | MOV | SRC_X, dst, src, 0, 0)
}

pub fn mov32_imm(dst: u8, imm: i32) -> Insn {
    Insn::new(ALU | MOV, dst, 0, 0, imm)
}

pub fn add64(dst: u8, src: u8) -> Insn {
    Insn::new(ALU64 | ADD | SRC_X, dst, src, 0, 0)
}

pub fn add64_imm(dst: u8, imm: i32) -> Insn {
    Insn::new(ALU64 | ADD, dst, 0, 0, imm)
}

pub fn sub64(dst: u8, src: u8) -> Insn {
    Insn::new(ALU64 | SUB | SRC_X, dst, src, 0, 0)
}

pub fn alu32(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(ALU | op | SRC_X, dst, src, 0, 0)
}

pub fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(ALU | op, dst, 0, 0, imm)
}

pub fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(ALU64 | op, dst, 0, 0, imm)
}

/// `dst = *(size *)(src + off)`.
pub fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(LDX | MEM | size, dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`.
pub fn stx(size: u8, dst: u8, off: i16, src: u8) -> Insn {
    Insn::new(STX | MEM | size, dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm`.
pub fn st_imm(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::new(ST | MEM | size, dst, 0, off, imm)
}

pub fn jmp64(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(JMP | op | SRC_X, dst, src, 0, 0)
}

pub fn jmp64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(JMP | op, dst, 0, 0, imm)
}

pub fn jmp32(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(JMP32 | op | SRC_X, dst, src, 0, 0)
}

pub fn jmp32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(JMP32 | op, dst, 0, 0, imm)
}

pub fn ja() -> Insn {
    Insn::new(JMP | JA, 0, 0, 0, 0)
}

/// A call of helper `helper` (`bpf_func_id`).
pub fn call(helper: i32) -> Insn {
    Insn::new(JMP | CALL, 0, 0, 0, helper)
}

/// A call of the kfunc whose BTF id (in vmlinux) is `btf_id`.
pub fn kfunc_call(btf_id: u32) -> Insn {
    Insn::new(JMP | CALL, 0, PSEUDO_KFUNC_CALL, 0, btf_id as i32)
}

/// A call of the program's function that starts `ahead` instructions
/// after the next.
pub fn call_ahead(ahead: i32) -> Insn {
    Insn::new(JMP | CALL, 0, PSEUDO_CALL, 0, ahead)
}

pub fn exit() -> Insn {
    Insn::new(JMP | EXIT, 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the kernel reads: code, dst_reg in the low nibble and
    /// src_reg in the high one (little endian), off, imm.
    fn bytes(insn: Insn) -> [u8; 8] {
        // SAFETY: Insn is a transparent 8-byte plain-data struct.
        unsafe { std::mem::transmute::<Insn, [u8; 8]>(insn) }
    }

    #[test]
    fn an_instruction_is_the_kernels_eight_bytes() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r3 = *(u64 *)(r1 + 16)
        let load = ldx(DW, 3, 1, 16);
        assert_eq!(bytes(load), [0x79, 0x13, 16, 0, 0, 0, 0, 0]);
        assert_eq!((load.dst(), load.src(), load.off()), (3, 1, 16));
        let back = Insn::from(&bpf_insn::from(&load));
        assert_eq!(back, load);
        assert_eq!(
            bytes(mov64_imm(0, -7)),
            [0xb7, 0, 0, 0, 0xf9, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn calls_are_told_apart_by_their_source() {
        assert_eq!(exit().code(), 0x95);
        assert_eq!(call(PROBE_READ_KERNEL).code(), 0x85);
        assert_eq!(PROBE_READ_KERNEL, 113);
        assert!(call(113).calls_helper(113));
        assert!(!kfunc_call(113).calls_helper(113));
        assert!(kfunc_call(7).is_call(PSEUDO_KFUNC_CALL));
        assert_eq!((call_ahead(3).src(), call_ahead(3).imm()), (1, 3));
        assert_ne!(call_ahead(1), call(1));
    }
}
