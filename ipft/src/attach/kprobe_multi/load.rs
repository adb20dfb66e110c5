//! Loading a kprobe program for kprobe-multi links: aya 0.14 cannot load
//! one with the expected attach type `BPF_TRACE_KPROBE_MULTI`, so the
//! relocated instructions ([`Programs`]) go through `sys::bpf`.
use std::os::fd::OwnedFd;

use anyhow::Result;
use ipft_filter::insn;

use crate::{
    attach::programs::{self, Programs},
    sys::bpf::{self, AttachType, ProgType},
};

/// Loads kprobe program `name` for kprobe-multi links (an empty program
/// instead under the test hook `empty-program`, for the benchmark's floor).
pub(super) fn load(programs: &Programs, name: &str) -> Result<OwnedFd> {
    let empty = [insn::mov64_imm(0, 0), insn::exit()];
    let program = bpf::Program {
        prog_type: ProgType::Kprobe,
        expected_attach_type: AttachType::TraceKprobeMulti,
        name,
        insns: match crate::testhook::empty_program() {
            true => &empty,
            false => programs.insns(name)?,
        },
        license: &programs.license,
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    programs::load(&program).map_err(|(err, log)| {
        anyhow::Error::new(err)
            .context(format!("verifier log: {log}"))
            .context(format!(
                "the kernel refused the {name} program (try -b kprobe)"
            ))
    })
}
