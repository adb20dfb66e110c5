//! The `-f` filter in eBPF: one function, `filter(skb)`, returning 1 when
//! the packet matches and 0 when it does not. ipft puts it in place of the
//! eBPF object's placeholder when it loads the programs
//! (`attach/programs.rs`).
//!
//! The function first finds the packet in the skb. A tracing program sees
//! the skb only through a kernel pointer: where the kernel has the kfunc
//! `bpf_rdonly_cast` (6.2), the fields are plain loads through the cast
//! pointer, which the verifier makes fault-safe; elsewhere each run of
//! fields is a `bpf_probe_read_kernel` into the stack, whose result is
//! checked. The fields (offsets from BTF, [`SkbFields`]) give the start: the MAC header
//! when it is set (not `~0`, and not equal to the network header with a
//! `mac_len` of 0), for the Ethernet program; else the network header, for
//! the raw IP program; else nothing matches. The bytes at hand are the
//! linear data, up to `head + tail`; the packet's length (classic `len`)
//! counts from the start to the end of the packet, paged data included.
//!
//! Then the classic program runs: A and X live in r6 and r7 (32-bit
//! operations keep them zero-extended, as classic registers are 32 bits),
//! the start address in r8, the bytes at hand in r9, scratch memory in
//! stack slots. With `bpf_rdonly_cast`, a packet load is a bounds check
//! against r9 and a plain load through the packet address cast to a struct
//! that begins with a byte array (the verifier checks such a load against
//! the array, and makes it fault-safe), then a byte swap: no helper call at
//! all. Without it, the first [`WINDOW`] bytes at hand are copied to the stack
//! once, by one `bpf_probe_read_kernel`: a packet load there
//! ([`Code::load`]) is a bounds check against r9, a stack load and a byte
//! swap to host order; a load past them reads its bytes with a helper call
//! of its own. Comparisons use 32-bit jumps (kernel 5.1) so that constants
//! above 2^31 compare unsigned.
//!
//! Why one copy: a helper call costs about a hundred instructions, and the
//! filter runs on every call of every traced function, for packets that do
//! not match as much as for those that do; an expression such as `udp and
//! dst port 53` reads five bytes fields of the headers.
use super::cbpf::{Alu, Op, Reg, Size, Src, Test, Verdict, SCRATCH_WORDS};
use crate::sys::bpf::Insn;

/// Where the fields the filter reads lie in this kernel's `struct sk_buff`,
/// in bytes (from BTF: `discover::skb_field_offsets`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbFields {
    /// `unsigned char *head`: the buffer the header offsets count from.
    pub head: u32,
    /// `unsigned char *data`: where `len` counts from.
    pub data: u32,
    /// `unsigned int len`: bytes from `data` to the packet's end.
    pub len: u32,
    /// `sk_buff_data_t tail`: the end of the linear data, an offset from
    /// `head` (a `u32` on 64-bit kernels).
    pub tail: u32,
    /// `__u16 mac_header`, `network_header`: offsets from `head`, `~0`
    /// when unset.
    pub mac_header: u32,
    pub network_header: u32,
    /// `__u16 mac_len`.
    pub mac_len: u32,
    /// Where the kernel has `bpf_rdonly_cast`: its BTF id and `sk_buff`'s,
    /// for plain loads of the fields.
    pub cast: Option<Cast>,
}

/// The BTF ids a `bpf_rdonly_cast(skb, sk_buff)` call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    /// The kfunc (the call's immediate).
    pub func: u32,
    /// `struct sk_buff` (its argument).
    pub skb: u32,
    /// A struct that begins with a byte array (`discover`'s
    /// `RdonlyCastIds::bytes`): a packet address cast to it is loaded from
    /// directly, 1, 2 or 4 bytes at a time.
    pub bytes: Option<u32>,
    /// That array's length: the start, cast once, is loaded from at any
    /// constant offset within it; a load beyond casts its own address.
    pub bytes_len: u32,
}

impl SkbFields {
    /// The fields, given each one's offset by name (from BTF).
    pub fn find(offset: impl Fn(&str) -> anyhow::Result<u32>) -> anyhow::Result<Self> {
        Ok(SkbFields {
            head: offset("head")?,
            data: offset("data")?,
            len: offset("len")?,
            tail: offset("tail")?,
            mac_header: offset("mac_header")?,
            network_header: offset("network_header")?,
            mac_len: offset("mac_len")?,
            cast: None,
        })
    }

    /// Where the 8 bytes holding `network_header`, `mac_header` and `tail`
    /// begin, when they fit in 8 bytes.
    fn headers_word(&self) -> Option<u32> {
        let fields = [
            (self.network_header, 2),
            (self.mac_header, 2),
            (self.tail, 4),
        ];
        let lo = fields.iter().map(|f| f.0).min()?;
        let hi = fields.iter().map(|f| f.0 + f.1).max()?;
        (hi - lo <= 8).then_some(lo)
    }

    /// The end of the last field the filter reads.
    fn end(&self) -> u32 {
        let ends = [self.head + 8, self.data + 8, self.len + 4, self.tail + 4];
        let headers = [
            self.mac_header + 2,
            self.network_header + 2,
            self.mac_len + 2,
        ];
        ends.into_iter().chain(headers).max().unwrap_or(0)
    }
}

/// The shift that brings the `size` bytes `at` bytes into a loaded 8-byte
/// word down to its low bits, in this machine's byte order (the programs'
/// too: the eBPF object is built for it).
fn word_shift(at: u32, size: u32) -> i32 {
    match cfg!(target_endian = "little") {
        true => 8 * at as i32,
        false => 8 * (8 - at - size) as i32,
    }
}

/// eBPF jump offsets are 16 bits: the translation cannot be longer.
pub const MAX_JUMP: usize = i16::MAX as usize;

/// Translates the Ethernet and the raw IP program of one expression into
/// the filter function. The error is the translation's length when a jump
/// would be too long for eBPF.
pub fn translate(ethernet: &[Op], raw_ip: &[Op], skb: &SkbFields) -> Result<Vec<Insn>, usize> {
    let mut code = Code::new();
    code.cast = skb.cast;
    let on_ethernet = code.label();
    let tail = code.find_start(skb, on_ethernet);
    // No MAC header: the raw IP program, from the network header if set.
    code.jump(jmp64_imm(JEQ, NETWORK, 0xffff), code.unmatched);
    code.push(mov64(START, NETWORK));
    // One program or the other runs: they share the stack below here.
    let stack = code.stack;
    code.program(raw_ip, skb, tail);
    code.bind(on_ethernet);
    code.stack = stack;
    code.program(ethernet, skb, tail);
    code.bind(code.matched);
    code.push(mov64_imm(R0, 1));
    code.push(exit());
    code.bind(code.unmatched);
    code.push(mov64_imm(R0, 0));
    code.push(exit());
    code.finish()
}

// Registers. r1-r5 are arguments and are lost at each helper call; r6-r9
// are kept.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const FP: u8 = 10;
/// While finding the start: the skb, its head, the chosen header's offset
/// (first the MAC header's), the network header's offset.
const SKB: u8 = 6;
const HEAD: u8 = 7;
const NETWORK: u8 = 9;
/// While the classic program runs: A, X, the packet's start address, the
/// bytes at hand there.
const A: u8 = 6;
const X: u8 = 7;
const START: u8 = 8;
const LINEAR: u8 = 9;

// The stack: a packet load's bytes, the packet length, scratch memory,
// then the skb fields read.
const LOADED: i16 = -8;
const PACKET_LEN: i16 = -16;
const SCRATCH: i16 = -16 - 4 * SCRATCH_WORDS as i16;

/// Stack offset of scratch word `k`.
fn scratch(k: u32) -> i16 {
    SCRATCH + 4 * k as i16
}

/// `bpf_probe_read_kernel(dst, size, unsafe_ptr)`.
const PROBE_READ_KERNEL: i32 = 113;

/// Fields lying within this many bytes are read with one helper call.
const READ_SPAN: u32 = 64;

/// Bytes from the start copied once to the stack: Ethernet, an IPv4 header
/// without options and the ports (38), IPv6 with TCP flags (67); within
/// the 512-byte stack the calling program shares.
pub const WINDOW: u32 = 64;

/// `src_reg` of a call to a kernel function (kfunc) by its BTF id.
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Where a packet load reads.
#[derive(Clone, Copy)]
enum At {
    /// At a constant offset.
    Abs(u32),
    /// At X plus a constant.
    Ind(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// The function being written: its instructions, the jumps whose targets
/// are labels, and the stack taken so far.
struct Code {
    insns: Vec<Insn>,
    jumps: Vec<(usize, Label)>,
    labels: Vec<Option<usize>>,
    stack: i16,
    matched: Label,
    unmatched: Label,
    cast: Option<Cast>,
    /// The stack offset of the current program's copy of the first
    /// [`WINDOW`] bytes, when it has one.
    window: Option<i16>,
    /// With a byte-array struct, when the current program cast its start
    /// to it: START holds the cast pointer.
    base: Option<Base>,
    /// With `bpf_rdonly_cast`: (the kfunc, the struct) the skb is cast to.
    skb_as: (u32, u32),
}

/// START holds the start cast to the byte-array struct; its address, for
/// the loads that cast their own, is on the stack.
#[derive(Clone, Copy)]
struct Base {
    address: Option<i16>,
}

impl Code {
    fn new() -> Self {
        Code {
            insns: Vec::new(),
            jumps: Vec::new(),
            labels: vec![None, None],
            stack: SCRATCH,
            matched: Label(0),
            unmatched: Label(1),
            cast: None,
            window: None,
            base: None,
            skb_as: (0, 0),
        }
    }

    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// A jump whose offset is filled in by [`Code::finish`].
    fn jump(&mut self, insn: Insn, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.insns.push(insn);
    }

    /// Resolves the jumps.
    fn finish(mut self) -> Result<Vec<Insn>, usize> {
        let len = self.insns.len();
        for (at, label) in self.jumps {
            let target = self.labels[label.0].expect("every label is bound");
            let offset = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(offset).map_err(|_| len)?;
        }
        Ok(self.insns)
    }

    /// Reads the skb's header offsets and head; leaves HEAD, START (the
    /// MAC header's offset) and NETWORK set and jumps to `on_ethernet` when
    /// the MAC header is the start, else falls through. Returns where `tail`
    /// landed on the stack.
    fn find_start(&mut self, skb: &SkbFields, on_ethernet: Label) -> i16 {
        self.push(mov64(SKB, R1));
        if let Some(cast) = self.cast {
            return self.find_start_cast(skb, cast, on_ethernet);
        }
        let at = self.read_fields(&[
            (skb.mac_header, 2),
            (skb.network_header, 2),
            (skb.tail, 4),
            (skb.head, 8),
        ]);
        self.push(ldx(DW, HEAD, FP, at[3]));
        self.jump(jmp64_imm(JEQ, HEAD, 0), self.unmatched);
        self.push(ldx(H, START, FP, at[0]));
        self.push(ldx(H, NETWORK, FP, at[1]));
        let on_raw_ip = self.label();
        self.jump(jmp64_imm(JEQ, START, 0xffff), on_raw_ip);
        self.jump(jmp64(JNE, START, NETWORK), on_ethernet);
        // A MAC header at the network header is real only with a length.
        let mac_len = self.read_fields(&[(skb.mac_len, 2)]);
        self.push(ldx(H, R1, FP, mac_len[0]));
        self.jump(jmp64_imm(JNE, R1, 0), on_ethernet);
        self.bind(on_raw_ip);
        at[2]
    }

    /// [`Code::find_start`] with `bpf_rdonly_cast`: the fields are loaded
    /// straight into their registers through the cast skb, which stays in
    /// r0 until the MAC length is read (no call comes between); only
    /// `tail`, wanted after the calls of the program, goes to the stack.
    /// With a byte-array struct that spans the skb, the skb is cast to it
    /// instead, and the two header offsets and `tail`, when they lie within
    /// 8 bytes (adjacent in 6.1, 6.12 and 6.18), are one load and shifts:
    /// each load through a cast pointer costs the JIT's address check (8
    /// x86 instructions), a shift and a mask one or two.
    fn find_start_cast(&mut self, skb: &SkbFields, cast: Cast, on_ethernet: Label) -> i16 {
        let fused = match cast.bytes {
            Some(bytes) if skb.end() <= cast.bytes_len => skb.headers_word().map(|lo| (bytes, lo)),
            _ => None,
        };
        // Every field is then read through the same cast, so that `data`
        // and `head` are both plain numbers.
        self.skb_as = match fused {
            Some((bytes, _)) => (cast.func, bytes),
            None => (cast.func, cast.skb),
        };
        self.cast_to(SKB, self.skb_as);
        self.push(ldx(DW, HEAD, R0, skb.head as i16));
        self.jump(jmp64_imm(JEQ, HEAD, 0), self.unmatched);
        self.stack -= 8;
        let tail = self.stack;
        match fused {
            Some((_, lo)) => {
                self.push(ldx(DW, R1, R0, lo as i16));
                self.extract_u16(START, R1, word_shift(skb.mac_header - lo, 2));
                self.extract_u16(NETWORK, R1, word_shift(skb.network_header - lo, 2));
                let shift = word_shift(skb.tail - lo, 4);
                if shift > 0 {
                    self.push(alu64_imm(Alu::Rsh as u8, R1, shift));
                }
                // A 4-byte store keeps the low 32 bits: `tail`.
                self.push(stx(W, FP, tail, R1));
            }
            None => {
                self.push(ldx(W, R1, R0, skb.tail as i16));
                self.push(stx(W, FP, tail, R1));
                self.push(ldx(H, START, R0, skb.mac_header as i16));
                self.push(ldx(H, NETWORK, R0, skb.network_header as i16));
            }
        }
        let on_raw_ip = self.label();
        self.jump(jmp64_imm(JEQ, START, 0xffff), on_raw_ip);
        self.jump(jmp64(JNE, START, NETWORK), on_ethernet);
        // A MAC header at the network header is real only with a length.
        self.push(ldx(H, R1, R0, skb.mac_len as i16));
        self.jump(jmp64_imm(JNE, R1, 0), on_ethernet);
        self.bind(on_raw_ip);
        tail
    }

    /// r0 = the address in `reg` cast to struct `to` by the kfunc `kfunc`
    /// (the verifier inlines it: one move).
    fn cast_to(&mut self, reg: u8, cast: (u32, u32)) {
        self.push(mov64(R1, reg));
        self.cast_r1(cast);
    }

    /// r0 = the address in r1 cast to struct `to` by the kfunc `kfunc`.
    fn cast_r1(&mut self, (kfunc, to): (u32, u32)) {
        self.push(mov64_imm(R2, to as i32));
        self.push(insn(JMP | CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, kfunc as i32));
    }

    /// `dst` = the 16 bits `shift` bits up in `word`.
    fn extract_u16(&mut self, dst: u8, word: u8, shift: i32) {
        self.push(mov64(dst, word));
        if shift > 0 {
            self.push(alu64_imm(Alu::Rsh as u8, dst, shift));
        }
        self.push(alu64_imm(Alu::And as u8, dst, 0xffff));
    }

    /// Reads skb fields (offset, size) into the stack: one
    /// `bpf_probe_read_kernel` per run of fields within [`READ_SPAN`] bytes,
    /// from an 8-byte boundary so that each keeps its alignment. Returns
    /// each field's stack offset. The skb is in SKB.
    fn read_fields(&mut self, fields: &[(u32, u8)]) -> Vec<i16> {
        if self.cast.is_some() {
            return self.load_fields(fields);
        }
        let mut order: Vec<usize> = (0..fields.len()).collect();
        order.sort_by_key(|&i| fields[i].0);
        let mut at = vec![0; fields.len()];
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let from = fields[first].0 & !7;
            let run = rest
                .iter()
                .take_while(|&&i| fields[i].0 + u32::from(fields[i].1) - from <= READ_SPAN)
                .count();
            let end = rest[..run]
                .iter()
                .map(|&i| fields[i].0 + u32::from(fields[i].1))
                .max()
                .unwrap_or(from);
            let span = (end - from).next_multiple_of(8);
            self.stack -= span as i16;
            for &i in &rest[..run] {
                at[i] = self.stack + (fields[i].0 - from) as i16;
            }
            let into = self.stack;
            self.probe_read(into, span as i32, |code| {
                code.push(mov64(R3, SKB));
                code.push(add64_imm(R3, from as i32));
            });
            rest = &rest[run..];
        }
        at
    }

    /// [`Code::read_fields`] with `bpf_rdonly_cast`: the cast (the verifier
    /// inlines it: one move), then a load and a store per field, so that
    /// the rest of the code finds them on the stack either way.
    fn load_fields(&mut self, fields: &[(u32, u8)]) -> Vec<i16> {
        self.cast_to(SKB, self.skb_as);
        let mut at = Vec::with_capacity(fields.len());
        for &(offset, size) in fields {
            let width = match size {
                1 => B,
                2 => H,
                4 => W,
                _ => DW,
            };
            self.stack -= 8;
            self.push(ldx(width, R1, R0, offset as i16));
            self.push(stx(width, FP, self.stack, R1));
            at.push(self.stack);
        }
        at
    }

    /// `bpf_probe_read_kernel(fp + into, size, r3)`, with r3 set by
    /// `source`; no match when it fails.
    fn probe_read(&mut self, into: i16, size: i32, source: impl FnOnce(&mut Self)) {
        source(self);
        self.push(mov64(R1, FP));
        self.push(add64_imm(R1, i32::from(into)));
        self.push(mov64_imm(R2, size));
        self.push(call(PROBE_READ_KERNEL));
        self.jump(jmp64_imm(JNE, R0, 0), self.unmatched);
    }

    /// One classic program, its start's offset in START: the start's
    /// address, the bytes there and the packet length, then its operations.
    fn program(&mut self, ops: &[Op], skb: &SkbFields, tail: i16) {
        self.push(ldx(W, LINEAR, FP, tail));
        self.jump(jmp64(JLT, LINEAR, START), self.unmatched);
        self.push(sub64(LINEAR, START));
        if ops.iter().any(Op::reads_len) {
            self.packet_len(skb);
        }
        self.push(add64(START, HEAD));
        self.window = None;
        self.base = None;
        let direct = self.cast.and_then(|c| c.bytes.map(|b| (c.func, b)));
        let reach = self.cast.map_or(0, |c| c.bytes_len.min(i16::MAX as u32));
        match direct {
            Some(cast) if ops.iter().any(|op| within(op, reach)) => {
                let keep = ops.iter().any(|op| op.loads_packet() && !within(op, reach));
                self.cast_start(cast, keep)
            }
            None if ops.iter().any(Op::loads_packet) => self.copy_window(),
            _ => {}
        }
        self.push(mov32_imm(A, 0));
        self.push(mov32_imm(X, 0));
        self.clear_scratch(ops);
        let labels: Vec<Label> = ops.iter().map(|_| self.label()).collect();
        for (i, op) in ops.iter().enumerate() {
            self.bind(labels[i]);
            self.op(op, &labels, i + 1);
        }
        if ops.last().is_some_and(Op::falls_through) {
            self.jump(ja(), self.unmatched);
        }
    }

    /// Casts the start to the byte-array struct once and keeps the pointer
    /// in START (the casts of other loads leave r6-r9 alone): a load at a
    /// constant offset is then one load. When `keep`, for the loads that
    /// still cast their own address, the address goes to the stack first.
    fn cast_start(&mut self, cast: (u32, u32), keep: bool) {
        let mut base = Base { address: None };
        if keep {
            self.stack -= 8;
            base.address = Some(self.stack);
            self.push(stx(DW, FP, self.stack, START));
        }
        self.cast_to(START, cast);
        self.push(mov64(START, R0));
        self.base = Some(base);
    }

    /// r1 = the start's address (not the cast pointer).
    fn start_address(&mut self) {
        match self.base {
            Some(Base { address: Some(at) }) => self.push(ldx(DW, R1, FP, at)),
            Some(Base { address: None }) => {
                unreachable!("cast_start keeps the address when a load needs it")
            }
            None => self.push(mov64(R1, START)),
        }
    }

    /// Copies the first bytes at hand, at most [`WINDOW`], to the stack. The
    /// size is a register the verifier knows to be at most `WINDOW`, so it
    /// takes the whole window as written; the loads read only what the
    /// bounds checks say was copied.
    fn copy_window(&mut self) {
        self.stack -= WINDOW as i16;
        let window = self.stack;
        self.push(mov64(R2, LINEAR));
        self.push(with_offset(jmp64_imm(JLE, R2, WINDOW as i32), 1));
        self.push(mov64_imm(R2, WINDOW as i32));
        self.push(mov64(R3, START));
        self.push(mov64(R1, FP));
        self.push(add64_imm(R1, i32::from(window)));
        self.push(call(PROBE_READ_KERNEL));
        self.jump(jmp64_imm(JNE, R0, 0), self.unmatched);
        self.window = Some(window);
    }

    /// Stores the packet's length from the start: `len + data - head - start`.
    fn packet_len(&mut self, skb: &SkbFields) {
        let at = self.read_fields(&[(skb.len, 4), (skb.data, 8)]);
        self.push(ldx(DW, R1, FP, at[1]));
        self.push(sub64(R1, HEAD));
        self.push(sub64(R1, START));
        self.push(ldx(W, R2, FP, at[0]));
        self.push(add64(R1, R2));
        self.push(stx(W, FP, PACKET_LEN, R1));
    }

    /// Zeroes the scratch words the program reads: the verifier wants
    /// stack read after it is written (libpcap never reads a word it has
    /// not stored, so the values never show).
    fn clear_scratch(&mut self, ops: &[Op]) {
        let mut read = [false; SCRATCH_WORDS as usize];
        for op in ops {
            if let Op::Mem(_, k) = op {
                read[*k as usize] = true;
            }
        }
        for (k, _) in read.iter().enumerate().filter(|(_, r)| **r) {
            self.push(st_imm(W, FP, scratch(k as u32), 0));
        }
    }

    /// One classic operation; `next` is the index of the one after it.
    fn op(&mut self, op: &Op, labels: &[Label], next: usize) {
        match *op {
            Op::LoadAbs(size, k) => self.load(A, size, At::Abs(k)),
            Op::LoadInd(size, k) => self.load(A, size, At::Ind(k)),
            Op::LoadHeaderLen(k) => {
                self.load(X, Size::Byte, At::Abs(k));
                self.push(alu32_imm(Alu::And as u8, X, 0xf));
                self.push(alu32_imm(Alu::Lsh as u8, X, 2));
            }
            Op::Imm(reg, k) => self.push(mov32_imm(register(reg), k as i32)),
            Op::Mem(reg, k) => self.push(ldx(W, register(reg), FP, scratch(k))),
            Op::Len(reg) => self.push(ldx(W, register(reg), FP, PACKET_LEN)),
            Op::Store(reg, k) => self.push(stx(W, FP, scratch(k), register(reg))),
            Op::Alu(alu, src) => self.alu(alu, src),
            Op::Neg => self.push(insn(ALU | NEG, A, 0, 0, 0)),
            Op::Copy(Reg::X) => self.push(mov32(X, A)),
            Op::Copy(Reg::A) => self.push(mov32(A, X)),
            Op::Jump(to) if to == next => {}
            Op::Jump(to) => self.jump(ja(), labels[to]),
            Op::Branch { test, src, yes, no } => {
                self.branch(test, src, (labels[yes], labels[no]), (yes, no), next)
            }
            Op::Return(Verdict::Match) => self.jump(ja(), self.matched),
            Op::Return(Verdict::NoMatch) => self.jump(ja(), self.unmatched),
            Op::Return(Verdict::A) => {
                self.jump(jmp32_imm(JNE, A, 0), self.matched);
                self.jump(ja(), self.unmatched);
            }
        }
    }

    /// An ALU operation, with libpcap's answers where eBPF's differ: a
    /// division by zero rejects the packet, a shift by 32 or more gives 0.
    fn alu(&mut self, alu: Alu, src: Src) {
        let op = alu as u8;
        match (alu, src) {
            (Alu::Div | Alu::Mod, Src::K(0)) => self.jump(ja(), self.unmatched),
            (Alu::Lsh | Alu::Rsh, Src::K(k)) if k >= 32 => self.push(mov32_imm(A, 0)),
            (_, Src::K(k)) => self.push(alu32_imm(op, A, k as i32)),
            (Alu::Div | Alu::Mod, Src::X) => {
                self.jump(jmp32_imm(JEQ, X, 0), self.unmatched);
                self.push(alu32(op, A, X));
            }
            (Alu::Lsh | Alu::Rsh, Src::X) => {
                self.push(with_offset(jmp32_imm(JGT, X, 31), 2));
                self.push(alu32(op, A, X));
                self.push(with_offset(ja(), 1));
                self.push(mov32_imm(A, 0));
            }
            (_, Src::X) => self.push(alu32(op, A, X)),
        }
    }

    /// A conditional jump: one eBPF jump when either target is the next
    /// operation (inverting the test if needed), else a jump and a `ja`.
    fn branch(
        &mut self,
        test: Test,
        src: Src,
        (yes, no): (Label, Label),
        (yes_at, no_at): (usize, usize),
        next: usize,
    ) {
        let compare = |op: u8| match src {
            Src::K(k) => jmp32_imm(op, A, k as i32),
            Src::X => jmp32(op, A, X),
        };
        let (op, inverse) = match test {
            Test::Eq => (JEQ, Some(JNE)),
            Test::Gt => (JGT, Some(JLE)),
            Test::Ge => (JGE, Some(JLT)),
            Test::Set => (JSET, None),
        };
        match inverse {
            _ if no_at == next => self.jump(compare(op), yes),
            Some(inverse) if yes_at == next => self.jump(compare(inverse), no),
            _ => {
                self.jump(compare(op), yes);
                self.jump(ja(), no);
            }
        }
    }

    /// The packet load: `size` bytes at `at` into `dst`, in host order; no
    /// match when they are not all in the linear data, or cannot be read.
    fn load(&mut self, dst: u8, size: Size, at: At) {
        let bytes = size as i32;
        // Linear data is far below 2 GiB: a larger offset is never inside.
        let limit = i32::MAX as u32 - 4;
        let (width, swap) = match size {
            Size::Byte => (B, None),
            Size::Half => (H, Some(16)),
            Size::Word => (W, Some(32)),
        };
        let direct = self.cast.and_then(|c| c.bytes.map(|b| (c.func, b)));
        let window = self.window.filter(|_| bytes as u32 <= WINDOW);
        let in_window = WINDOW as i32 - bytes;
        let reach = self.cast.map_or(0, |c| c.bytes_len.min(i16::MAX as u32));
        let swapped = match at {
            At::Abs(k) | At::Ind(k) if k > limit => return self.jump(ja(), self.unmatched),
            At::Abs(k) => {
                self.jump(jmp64_imm(JLT, LINEAR, k as i32 + bytes), self.unmatched);
                let based = self.base.is_some() && k + bytes as u32 <= reach;
                // (k is at most `limit`: the sum does not wrap.)
                match (direct, based, window) {
                    (Some(_), true, _) => self.push(ldx(width, dst, START, k as i16)),
                    (Some(cast), false, _) => {
                        self.start_address();
                        self.push(add64_imm(R1, k as i32));
                        self.direct_load(dst, width, cast);
                    }
                    (None, _, Some(window)) if k as i32 <= in_window => {
                        return self.window_load(dst, bytes, FP, window + k as i16);
                    }
                    (None, _, _) => self.read_load(dst, width, bytes, |code| {
                        code.push(mov64(R3, START));
                        code.push(add64_imm(R3, k as i32));
                    }),
                }
                true
            }
            At::Ind(k) => {
                self.index(k, bytes);
                match (direct, window) {
                    (Some(cast), _) => {
                        self.start_address();
                        self.push(add64(R1, R3));
                        self.direct_load(dst, width, cast);
                        true
                    }
                    (None, window) => {
                        self.indexed_read(dst, width, bytes, window, swap);
                        false
                    }
                }
            }
        };
        if let Some(bits) = swap.filter(|_| swapped) {
            self.push(insn(ALU | END | TO_BE, dst, 0, 0, bits));
        }
    }

    /// r3 = X + k, checked so that `bytes` from there are at hand (in 64
    /// bits: no wrapping past the check); else no match.
    fn index(&mut self, k: u32, bytes: i32) {
        self.push(mov32(R3, X));
        self.push(add64_imm(R3, k as i32));
        self.push(mov64(R2, R3));
        self.push(add64_imm(R2, bytes));
        self.jump(jmp64(JGT, R2, LINEAR), self.unmatched);
    }

    /// A load at r3 from the start without `bpf_rdonly_cast`: from the
    /// window when it lies there (stack loads at a variable offset the check
    /// bounds), else read with a helper call; swapped to host order.
    fn indexed_read(
        &mut self,
        dst: u8,
        width: u8,
        bytes: i32,
        window: Option<i16>,
        swap: Option<i32>,
    ) {
        let past = self.label();
        let done = self.label();
        if let Some(window) = window {
            self.jump(jmp64_imm(JGT, R3, WINDOW as i32 - bytes), past);
            self.push(mov64(R1, FP));
            self.push(add64(R1, R3));
            self.window_load(dst, bytes, R1, window);
            self.jump(ja(), done);
        }
        self.bind(past);
        self.read_load(dst, width, bytes, |code| code.push(add64(R3, START)));
        if let Some(bits) = swap {
            self.push(insn(ALU | END | TO_BE, dst, 0, 0, bits));
        }
        self.bind(done);
    }

    /// `bytes` read with `bpf_probe_read_kernel` from r3 (set by `source`)
    /// into the stack, then loaded into `dst`.
    fn read_load(&mut self, dst: u8, width: u8, bytes: i32, source: impl FnOnce(&mut Self)) {
        self.probe_read(LOADED, bytes, source);
        self.push(ldx(width, dst, FP, LOADED));
    }

    /// A load of `width` at the address in r1, through `bpf_rdonly_cast`
    /// to the byte-array struct `(kfunc, struct)`: the verifier inlines the
    /// cast (a move) and makes the load fault-safe.
    fn direct_load(&mut self, dst: u8, width: u8, cast: (u32, u32)) {
        self.cast_r1(cast);
        self.push(ldx(width, dst, R0, 0));
    }

    /// `bytes` bytes of the window at `base + off` into `dst`, big-endian
    /// as classic loads are: a byte at a time, because the verifier wants
    /// every stack access aligned to its size and packet fields are not.
    fn window_load(&mut self, dst: u8, bytes: i32, base: u8, off: i16) {
        self.push(ldx(B, dst, base, off));
        for i in 1..bytes as i16 {
            self.push(ldx(B, R2, base, off + i));
            self.push(alu32_imm(Alu::Lsh as u8, dst, 8));
            self.push(alu32(Alu::Or as u8, dst, R2));
        }
    }
}

/// Whether `op` loads from a constant offset that lies, whole, within the
/// first `reach` bytes.
fn within(op: &Op, reach: u32) -> bool {
    match *op {
        Op::LoadAbs(size, k) => k.checked_add(size as u32).is_some_and(|end| end <= reach),
        Op::LoadHeaderLen(k) => k < reach,
        _ => false,
    }
}

fn register(reg: Reg) -> u8 {
    match reg {
        Reg::A => A,
        Reg::X => X,
    }
}

// eBPF encoding (include/uapi/linux/bpf.h, bpf_common.h).
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const SRC_X: u8 = 0x08;
const MEM: u8 = 0x60;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const ADD: u8 = 0x00;
const SUB: u8 = 0x10;
const NEG: u8 = 0x80;
const MOV: u8 = 0xb0;
const END: u8 = 0xd0;
/// With END: convert to big-endian (a swap on x86_64).
const TO_BE: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JGE: u8 = 0x30;
const JSET: u8 = 0x40;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const JLT: u8 = 0xa0;
const JLE: u8 = 0xb0;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

fn with_offset(mut insn: Insn, off: i16) -> Insn {
    insn.off = off;
    insn
}

fn mov64(dst: u8, src: u8) -> Insn {
    insn(ALU64 | MOV | SRC_X, dst, src, 0, 0)
}

fn mov64_imm(dst: u8, imm: i32) -> Insn {
    insn(ALU64 | MOV, dst, 0, 0, imm)
}

fn mov32(dst: u8, src: u8) -> Insn {
    insn(ALU | MOV | SRC_X, dst, src, 0, 0)
}

fn mov32_imm(dst: u8, imm: i32) -> Insn {
    insn(ALU | MOV, dst, 0, 0, imm)
}

fn add64(dst: u8, src: u8) -> Insn {
    insn(ALU64 | ADD | SRC_X, dst, src, 0, 0)
}

fn add64_imm(dst: u8, imm: i32) -> Insn {
    insn(ALU64 | ADD, dst, 0, 0, imm)
}

fn sub64(dst: u8, src: u8) -> Insn {
    insn(ALU64 | SUB | SRC_X, dst, src, 0, 0)
}

fn alu32(op: u8, dst: u8, src: u8) -> Insn {
    insn(ALU | op | SRC_X, dst, src, 0, 0)
}

fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(ALU | op, dst, 0, 0, imm)
}

fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(ALU64 | op, dst, 0, 0, imm)
}

fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    insn(LDX | MEM | size, dst, src, off, 0)
}

fn stx(size: u8, dst: u8, off: i16, src: u8) -> Insn {
    insn(STX | MEM | size, dst, src, off, 0)
}

fn st_imm(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    insn(ST | MEM | size, dst, 0, off, imm)
}

fn jmp64(op: u8, dst: u8, src: u8) -> Insn {
    insn(JMP | op | SRC_X, dst, src, 0, 0)
}

fn jmp64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(JMP | op, dst, 0, 0, imm)
}

fn jmp32(op: u8, dst: u8, src: u8) -> Insn {
    insn(JMP32 | op | SRC_X, dst, src, 0, 0)
}

fn jmp32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(JMP32 | op, dst, 0, 0, imm)
}

fn ja() -> Insn {
    insn(JMP | JA, 0, 0, 0, 0)
}

fn call(helper: i32) -> Insn {
    insn(JMP | CALL, 0, 0, 0, helper)
}

fn exit() -> Insn {
    insn(JMP | EXIT, 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's layout, near enough: what matters is that the fields
    /// are apart.
    const SKB: SkbFields = SkbFields {
        head: 192,
        data: 200,
        len: 112,
        tail: 184,
        mac_header: 182,
        network_header: 180,
        mac_len: 120,
        cast: None,
    };

    /// [`SKB`] with `bpf_rdonly_cast` (kfunc 1234, `sk_buff` 99) and a
    /// byte-array struct (77) of `bytes_len` bytes.
    fn with_array(bytes_len: u32) -> SkbFields {
        let cast = Cast {
            func: 1234,
            skb: 99,
            bytes: Some(77),
            bytes_len,
        };
        SkbFields {
            cast: Some(cast),
            ..SKB
        }
    }

    /// The instructions' jump targets: each must land inside the function.
    fn targets(insns: &[Insn]) -> Vec<usize> {
        let jumps = insns.iter().enumerate().filter(|(_, i)| {
            let class = i.code & 0x07;
            let op = i.code & 0xf0;
            (class == JMP || class == JMP32) && op != CALL && op != EXIT
        });
        jumps
            .map(|(at, i)| (at as isize + 1 + i.off as isize) as usize)
            .collect()
    }

    #[test]
    fn every_jump_lands_inside_and_both_verdicts_exit() {
        let ethernet = [
            Op::LoadAbs(Size::Half, 12),
            Op::Branch {
                test: Test::Eq,
                src: Src::K(0x800),
                yes: 2,
                no: 3,
            },
            Op::Return(Verdict::Match),
            Op::Return(Verdict::NoMatch),
        ];
        let insns = translate(&ethernet, &[Op::Return(Verdict::NoMatch)], &SKB).unwrap();
        assert!(targets(&insns).iter().all(|&t| t < insns.len()));
        let exits: Vec<&Insn> = insns.iter().filter(|i| i.code == JMP | EXIT).collect();
        assert_eq!(exits.len(), 2, "one exit per verdict");
        assert_eq!(insns[insns.len() - 2], mov64_imm(R0, 0));
        assert_eq!(insns[insns.len() - 4], mov64_imm(R0, 1));
    }

    fn probe_reads(insns: &[Insn]) -> usize {
        let call = |i: &&Insn| i.code == JMP | CALL && i.regs == 0 && i.imm == PROBE_READ_KERNEL;
        insns.iter().filter(call).count()
    }

    #[test]
    fn packet_loads_in_the_window_are_a_bounds_check_a_stack_load_and_a_swap() {
        let insns = |ops: &[Op]| translate(ops, &[Op::Return(Verdict::NoMatch)], &SKB).unwrap();
        let one = insns(&[Op::LoadAbs(Size::Word, 26), Op::Return(Verdict::A)]);
        let two = insns(&[
            Op::LoadAbs(Size::Word, 26),
            Op::LoadAbs(Size::Word, 30),
            Op::Return(Verdict::A),
        ]);
        assert_eq!(
            two.len() - one.len(),
            1 + 10,
            "check, then 4 bytes shifted in"
        );
        // The skb's header offsets, its mac_len, and the window.
        assert_eq!(probe_reads(&two), 3);
        assert!(!one.iter().any(|i| i.code == ALU | END | TO_BE), "no swap");
        let byte = insns(&[Op::LoadAbs(Size::Byte, 23), Op::Return(Verdict::A)]);
        assert_eq!(byte.len(), one.len() - 9, "a byte is one load");
        let far = insns(&[Op::LoadAbs(Size::Word, WINDOW - 3), Op::Return(Verdict::A)]);
        assert_eq!(probe_reads(&far), 4, "past the window: a read of its own");
    }

    #[test]
    fn an_indexed_load_tries_the_window_first() {
        let ops = [
            Op::LoadHeaderLen(14),
            Op::LoadInd(Size::Half, 16),
            Op::Return(Verdict::A),
        ];
        let insns = translate(&ops, &[Op::Return(Verdict::NoMatch)], &SKB).unwrap();
        // Header offsets, mac_len, the window, and the fallback past it.
        assert_eq!(probe_reads(&insns), 4);
        let bound = jmp64_imm(JGT, R3, (WINDOW - 2) as i32);
        assert!(insns
            .iter()
            .any(|i| i.code == bound.code && i.imm == bound.imm));
        assert!(targets(&insns).iter().all(|&t| t < insns.len()));
    }

    #[test]
    fn without_packet_loads_nothing_is_copied() {
        let ops = [Op::Len(Reg::A), Op::Return(Verdict::A)];
        let insns = translate(&ops, &ops, &SKB).unwrap();
        // len and data (88 bytes apart), header offsets, mac_len: no window.
        assert_eq!(probe_reads(&insns), 2 * 2 + 2);
    }

    #[test]
    fn with_bpf_rdonly_cast_skb_fields_are_plain_loads() {
        let cast = Cast {
            func: 1234,
            skb: 99,
            bytes: None,
            bytes_len: 0,
        };
        let skb = SkbFields {
            cast: Some(cast),
            ..SKB
        };
        let ops = [Op::LoadAbs(Size::Half, 12), Op::Return(Verdict::A)];
        let insns = translate(&ops, &ops, &skb).unwrap();
        assert_eq!(probe_reads(&insns), 2, "only the window, in each program");
        let kfunc = insn(JMP | CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 1234);
        assert_eq!(insns.iter().filter(|i| **i == kfunc).count(), 1);
        assert!(
            insns.contains(&ldx(DW, HEAD, R0, 192)),
            "head through the cast, into its register"
        );
    }

    #[test]
    fn reading_the_length_reads_len_and_data() {
        let insns = |ops: &[Op]| translate(ops, ops, &SKB).unwrap();
        let without = insns(&[Op::Return(Verdict::A)]);
        let with = insns(&[Op::Len(Reg::A), Op::Return(Verdict::A)]);
        // len and data are 88 bytes apart: two reads, in each program.
        assert_eq!(probe_reads(&with) - probe_reads(&without), 4);
    }

    #[test]
    fn with_a_byte_array_struct_packet_loads_make_no_helper_call() {
        let skb = with_array(0);
        let ops = [
            Op::LoadAbs(Size::Half, 12),
            Op::LoadHeaderLen(14),
            Op::LoadInd(Size::Word, 16),
            Op::Return(Verdict::A),
        ];
        let insns = translate(&ops, &ops, &skb).unwrap();
        assert_eq!(probe_reads(&insns), 0);
        let loads: Vec<&Insn> = insns
            .iter()
            .filter(|i| i.code & 0x07 == LDX && i.regs >> 4 == R0 && i.off == 0)
            .collect();
        // Three loads through the cast packet address in each program.
        assert_eq!(loads.len(), 6, "{loads:?}");
        assert!(insns.contains(&mov64_imm(R2, 77)));
    }

    /// With an array long enough, the start is cast once per program and
    /// a load at a constant offset is a fill of that pointer and a load;
    /// an indexed load, or one beyond the array, still casts its address.
    #[test]
    fn constant_loads_within_the_array_go_through_one_cast() {
        let kfunc = insn(JMP | CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 1234);
        let casts = |bytes_len, ops: &[Op]| {
            let insns = translate(ops, ops, &with_array(bytes_len)).unwrap();
            let calls = insns.iter().filter(|i| **i == kfunc).count();
            // Less the skb's cast, in find_start.
            (calls - 1, insns)
        };
        let constant = [
            Op::LoadAbs(Size::Half, 12),
            Op::LoadAbs(Size::Byte, 23),
            Op::LoadAbs(Size::Word, 26),
            Op::Return(Verdict::A),
        ];
        let (calls, insns) = casts(16384, &constant);
        assert_eq!(calls, 2, "the start's, in each program");
        assert!(insns.contains(&ldx(H, A, START, 12)));
        assert!(insns.contains(&ldx(W, A, START, 26)));
        assert_eq!(casts(0, &constant).0, 6, "one per load without the length");
        assert_eq!(
            casts(24, &constant).0,
            2 * 2,
            "the start's, and [26] beyond"
        );
        let indexed = [
            Op::LoadHeaderLen(14),
            Op::LoadInd(Size::Half, 16),
            Op::Return(Verdict::A),
        ];
        assert_eq!(casts(16384, &indexed).0, 2 * 2, "the start's, and x+16");
    }

    /// With a byte-array struct spanning the skb, the two header offsets
    /// and `tail` are one 8-byte load; a shorter struct reads them one by one.
    #[test]
    fn header_offsets_and_tail_are_one_load() {
        let with = |bytes_len| {
            let ops = [Op::LoadAbs(Size::Half, 12), Op::Return(Verdict::A)];
            translate(&ops, &ops, &with_array(bytes_len)).unwrap()
        };
        let fused = with(16384);
        // network_header 180, mac_header 182, tail 184: one word from 180.
        assert!(fused.contains(&ldx(DW, R1, R0, 180)));
        let shift = |reg, at, size| alu64_imm(Alu::Rsh as u8, reg, word_shift(at, size));
        assert!(fused.contains(&shift(START, 2, 2)));
        assert!(fused.contains(&shift(R1, 4, 4)));
        assert!(!fused.contains(&ldx(H, START, R0, 182)));
        assert!(
            fused.contains(&mov64_imm(R2, 77)),
            "the skb cast to the array"
        );
        let apart = with(64);
        assert!(apart.contains(&ldx(H, START, R0, 182)));
        assert!(apart.contains(&ldx(H, NETWORK, R0, 180)));
        assert!(
            apart.contains(&mov64_imm(R2, 99)),
            "the skb cast to sk_buff"
        );
    }

    #[test]
    fn offsets_past_the_linear_data_never_match() {
        let far = translate(
            &[
                Op::LoadAbs(Size::Word, u32::MAX - 1),
                Op::Return(Verdict::A),
            ],
            &[],
            &SKB,
        );
        let near = translate(
            &[Op::LoadAbs(Size::Word, 0), Op::Return(Verdict::A)],
            &[],
            &SKB,
        );
        assert_eq!(
            far.unwrap().len(),
            near.unwrap().len() - 10,
            "one `ja` instead of the check and the loads"
        );
    }

    #[test]
    fn a_translation_jumps_cannot_cross_is_refused_with_its_length() {
        let mut ops = vec![Op::Branch {
            test: Test::Eq,
            src: Src::K(1),
            yes: 5000,
            no: 1,
        }];
        ops.extend((1..5000).map(|k| Op::LoadAbs(Size::Byte, k)));
        ops.push(Op::Return(Verdict::Match));
        let len = translate(&ops, &[], &SKB).unwrap_err();
        assert!(len > MAX_JUMP, "{len}");
    }

    #[test]
    fn skb_fields_are_found_by_name() {
        let offsets = |field: &str| match field {
            "head" => Ok(192),
            "data" => Ok(200),
            "len" => Ok(112),
            "tail" => Ok(184),
            "mac_header" => Ok(182),
            "network_header" => Ok(180),
            "mac_len" => Ok(120),
            _ => anyhow::bail!("no {field}"),
        };
        assert_eq!(SkbFields::find(offsets).unwrap(), SKB);
        let missing = SkbFields::find(|f| match f {
            "mac_len" => anyhow::bail!("no sk_buff.mac_len"),
            _ => Ok(0),
        });
        assert_eq!(missing.unwrap_err().to_string(), "no sk_buff.mac_len");
    }
}
