//! What the backends share: the identities a function's events carry, and
//! attaching targets one by one from every CPU (kprobe, ftrace), with one
//! reason for all when what they need could not be prepared.
use anyhow::{anyhow, Result};

use super::{Link, Outcome, Report};
use crate::{
    discover::{Address, Target},
    par,
};

/// The identities a function's events carry: `bpf_get_func_ip` gives the
/// function's start, or on x86 kernels with IBT the address after its
/// 4-byte ENDBR instruction (kprobes), or ftrace's hook when the ENDBR
/// there was sealed (fprobe). Both addresses around the ENDBR are kept,
/// so either resolves.
pub fn identities(target: &Target) -> Vec<u64> {
    match target.address {
        Address::Symbol => vec![target.addr, target.addr + 4],
        Address::FtraceSite => vec![target.addr.wrapping_sub(4), target.addr],
    }
}

/// One target's links, and the function identities its events carry.
pub type Hooked = (Vec<Link>, Vec<u64>);

/// Attaches each target with `attach` (one link each), from every CPU at
/// once: each costs the kernel a verifier pass or a probe. Returns the
/// links of the targets reported as attached.
pub fn each_target(
    targets: Vec<Target>,
    attach: &(dyn Fn(&Target) -> Result<Hooked> + Sync),
    report: &mut Report<'_>,
) -> Vec<Link> {
    let mut links = Vec::new();
    let work = |target: Target| {
        let result = attach(&target);
        (target, result)
    };
    par::ordered(targets, par::cpus(), &work, &mut |(target, result)| {
        let outcome: Outcome = match result {
            Ok((made, identities)) => {
                links.extend(made);
                Ok(identities)
            }
            Err(err) => Err(err),
        };
        report(target, outcome)
    });
    links
}

/// Tells `report` that every target failed for the same reason (what they
/// all needed could not be prepared).
pub fn fail_all(targets: Vec<Target>, err: &anyhow::Error, report: &mut Report<'_>) -> Vec<Link> {
    let why = format!("{err:#}");
    for target in targets {
        if !report(target, Err(anyhow!("{why}"))) {
            break;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::candidate;

    #[test]
    fn identities_span_the_endbr_on_the_side_the_address_leaves() {
        let mut target = candidate("ip_rcv", "vmlinux").target;
        target.addr = 0xffffffff93cdf5f0;
        assert_eq!(
            identities(&target),
            [0xffffffff93cdf5f0, 0xffffffff93cdf5f4]
        );
        target.addr = 0xffffffff93cdf5f4;
        target.address = Address::FtraceSite;
        assert_eq!(
            identities(&target),
            [0xffffffff93cdf5f0, 0xffffffff93cdf5f4]
        );
    }
}
