//! What the backends share: the identities a function's events carry, and
//! attaching targets one by one from every CPU (kprobe, ftrace), with one
//! reason for all when what they need could not be prepared.
use anyhow::{anyhow, Result};

use super::{Link, Outcome, Report};
use crate::{discover::Target, par};

/// The identities a function's events carry: `bpf_get_func_ip` gives the
/// function's address, or on x86 kernels with IBT the address after its
/// 4-byte ENDBR instruction. Both are kept, so either resolves.
pub fn identities(target: &Target) -> Vec<u64> {
    vec![target.addr, target.addr + 4]
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
