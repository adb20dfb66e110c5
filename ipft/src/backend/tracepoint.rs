//! tracepoint backend: BTF tracepoints (`tp_btf`) that carry an skb.
//!
//! Minimum kernel: 5.5. Works where kprobes and fentry do not (e.g. locked
//! down kernels): about 30 places in the stack (net_dev_queue,
//! netif_receive_skb, kfree_skb, consume_skb, …), named by the tracepoint.
//! A tracepoint program cannot ask which tracepoint it runs on, so each
//! attached tracepoint gets its own program copy `tp_p{pos}_s{slot}`, whose
//! slot id identifies it.
//!
//! ```text
//! sudo ipft -m 0x55555555 -b tracepoint
//! ```
use anyhow::{Context, Result};
use aya::{programs::BtfTracePoint, Btf, Ebpf};
use ipft_common::{TP_POSITIONS, TP_SLOTS};

use super::{Backend, Link};
use crate::discover::{Target, TargetKind};

/// The `kfree_skb` tracepoint gets a program of its own that also reads
/// the drop reason (kernels 5.17+, where the reason is its third argument).
pub fn reads_drop_reason(target: &Target) -> bool {
    target.name == "kfree_skb" && target.skb_pos == 0 && target.reason_pos == Some(2)
}

pub struct Tracepoint {
    btf: Btf,
}

impl Tracepoint {
    pub fn new() -> Result<Self> {
        let btf = Btf::from_sys_fs().context("cannot read the kernel's BTF")?;
        Ok(Tracepoint { btf })
    }
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

    fn attach(&mut self, ebpf: &mut Ebpf, target: &Target, slot: usize) -> Result<Vec<Link>> {
        anyhow::ensure!(
            slot < TP_SLOTS,
            "all {TP_SLOTS} program slots for this position are in use"
        );
        let name = match reads_drop_reason(target) {
            true => "tp_kfree_skb".to_string(),
            false => format!("tp_p{}_s{slot}", target.skb_pos),
        };
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(&name)
            .context("program missing from the eBPF object")?
            .try_into()?;
        prog.load(&target.name, &self.btf)
            .context("tp_btf load failed")?;
        let id = prog.attach().context("tp_btf attach failed")?;
        Ok(vec![Box::new(prog.take_link(id)?)])
    }
}
