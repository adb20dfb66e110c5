//! The `-f` filter function on its own, in a tc classifier. ipft loads it
//! once before attaching anything ([`check`]): a filter the verifier refuses
//! (too long, too complex) stops ipft with the verifier's reason, and
//! nothing is attached. ipft-filter's `kernel` test runs the same
//! classifier on packets with `BPF_PROG_TEST_RUN` and compares its verdicts
//! with libpcap's.
//!
//! A tc program's context is the packet's real `struct sk_buff *`, and
//! root may call bpf_probe_read_kernel from any program type: the classifier
//! hands its context to the filter as the skb, so the filter reads the
//! packet exactly as it does in a tracing program.
#[cfg(test)]
mod tests;

use anyhow::{bail, Result};

use ipft_filter::insn::{self, Insn};

use super::programs;
use crate::sys::bpf::{self, AttachType, ProgType};

/// A classifier returning the filter's verdict (1 or 0) on its packet:
/// `call filter; exit`, then the filter function.
pub fn classifier(filter: &[Insn]) -> Vec<Insn> {
    let mut insns = vec![insn::call_ahead(1), insn::exit()];
    insns.extend_from_slice(filter);
    insns
}

/// Loads the filter in a classifier, to learn whether the kernel takes it.
pub fn check(filter: &[Insn]) -> Result<()> {
    let insns = classifier(filter);
    let program = bpf::Program {
        prog_type: ProgType::SchedCls,
        expected_attach_type: AttachType::None,
        name: "ipft_filter",
        insns: &insns,
        license: c"GPL",
        attach_btf_id: 0,
        attach_btf_obj: None,
    };
    match programs::load(&program) {
        Ok(_) => Ok(()),
        Err((err, log)) => bail!(
            "the kernel refuses the filter's {} eBPF instructions ({err}): {log}",
            filter.len()
        ),
    }
}
