//! tracepoint backend: BTF tracepoints (`tp_btf`) that carry an skb.
//!
//! Minimum kernel: 5.5. Works where kprobes and fentry do not (e.g. locked
//! down kernels): about 30 places in the stack (net_dev_queue,
//! netif_receive_skb, kfree_skb, consume_skb, …), named by the tracepoint.
//! A tracepoint program cannot ask which tracepoint it runs on, so each
//! attached tracepoint gets its own program copy `tp_p{pos}_s{slot}`, whose
//! slot id identifies it. ipft loads them itself ([`super::object`]),
//! against the `btf_trace_<name>` type found at discovery.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b tracepoint
//! ```
use std::os::fd::AsFd;

use anyhow::{anyhow, Result};
use ipft_common::{TP_POSITIONS, TP_SLOTS};

use super::{
    object::{self, Loaded, Programs},
    Backend, Link,
};
use crate::{
    discover::{Target, TargetKind},
    sys::bpf::{self, AttachType, ProgType},
};

/// The `kfree_skb` tracepoint gets a program of its own that also reads
/// the drop reason (kernels 5.17+, where the reason is its third argument).
pub fn reads_drop_reason(target: &Target) -> bool {
    target.name == "kfree_skb" && target.skb_pos == 0 && target.reason_pos == Some(2)
}

#[derive(Default)]
pub struct Tracepoint {
    /// The `tp_*` programs, relocated on first use.
    programs: Option<Programs>,
}

impl Backend for Tracepoint {
    fn name(&self) -> &'static str {
        "tracepoint"
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Tracepoint
    }

    fn check(&self, target: &Target) -> Result<(), &'static str> {
        if usize::from(target.skb_pos) >= TP_POSITIONS {
            return Err("the skb argument comes too late");
        }
        Ok(())
    }

    fn attach(&mut self, ebpf: &mut Loaded, target: &Target, slot: usize) -> Result<Vec<Link>> {
        anyhow::ensure!(
            slot < TP_SLOTS,
            "all {TP_SLOTS} program slots for this position are in use"
        );
        let name = match reads_drop_reason(target) {
            true => "tp_kfree_skb".to_string(),
            false => format!("tp_p{}_s{slot}", target.skb_pos),
        };
        if self.programs.is_none() {
            self.programs = Some(Programs::relocate(ebpf, |n| n.starts_with("tp_"))?);
        }
        let programs = self.programs.as_ref().expect("relocated above");
        let program = bpf::Program {
            prog_type: ProgType::Tracing,
            expected_attach_type: AttachType::TraceRawTp,
            name: &name,
            insns: programs.insns(&name)?,
            license: &programs.license,
            attach_btf_id: target.btf_id,
            attach_btf_obj: None,
        };
        let prog = object::load(&program)
            .map_err(|(err, log)| anyhow!("tp_btf load failed ({err}); verifier log: {log}"))?;
        // The link holds the program: its fd can close.
        let link = bpf::raw_tracepoint_open(prog.as_fd())
            .map_err(|err| anyhow!("tp_btf attach failed: {err}"))?;
        Ok(vec![Box::new(link)])
    }
}
