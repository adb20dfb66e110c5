//! Where each function is, for the backends that hook functions:
//! `/proc/kallsyms`, or ftrace's own list with addresses
//! (`available_filter_functions_addrs`, 6.5+).
//!
//! Backends built on ftrace (kprobe-multi, fentry) can hook only what ftrace
//! lists, and some functions with an skb parameter are not there (notrace,
//! the tracepoints' own `trace_event_raw_event_*`…). Its list with
//! addresses answers both questions in one read of 40,000 lines, where
//! kallsyms (150,000 lines) then ftrace's list without addresses took two:
//! measured in the 6.12 guest, 0.46 s of kernel time against 0.35 + 0.28 s.
//! kprobes reach functions ftrace does not list, so that backend reads
//! kallsyms.
use std::{
    collections::{HashMap, HashSet},
    fs,
};

use anyhow::Result;

use super::{kallsyms, read_kallsyms, Address, Candidate};

/// Where addresses are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `/proc/kallsyms`: every function's start.
    Kallsyms,
    /// ftrace's list with addresses: the functions ftrace can hook, at the
    /// hook (see [`Address::FtraceSite`]).
    Ftrace,
}

const FTRACE_ADDRS: &[&str] = &[
    "/sys/kernel/tracing/available_filter_functions_addrs",
    "/sys/kernel/debug/tracing/available_filter_functions_addrs",
];

/// The text of one source.
pub struct Listing {
    pub source: Source,
    text: String,
}

impl Listing {
    /// Reads `want`; ftrace's list falls back to kallsyms on kernels before
    /// 6.5 or without a readable tracefs.
    pub fn read(want: Source) -> Result<Self> {
        if want == Source::Ftrace {
            if let Some(text) = FTRACE_ADDRS.iter().find_map(|p| fs::read_to_string(p).ok()) {
                return Ok(Listing {
                    source: Source::Ftrace,
                    text,
                });
            }
        }
        Ok(Listing {
            source: Source::Kallsyms,
            text: read_kallsyms()?,
        })
    }

    /// The addresses of the names in `wanted`, keyed by (module, name);
    /// the first one wins where a name is there twice (static functions).
    fn addresses(&self, wanted: &HashSet<&str>) -> HashMap<(String, String), u64> {
        match self.source {
            Source::Kallsyms => kallsyms(&self.text, wanted),
            Source::Ftrace => ftrace_sites(&self.text, wanted),
        }
    }

    /// What a function missing from this listing is, for `-v`.
    pub fn missing_means(&self) -> &'static str {
        match self.source {
            Source::Kallsyms => "are not in /proc/kallsyms (inlined)",
            Source::Ftrace => {
                "are not in ftrace's available_filter_functions_addrs (inlined, or notrace)"
            }
        }
    }
}

/// Parses ftrace's `ADDR NAME` or `ADDR NAME [MODULE]` lines.
fn ftrace_sites(text: &str, wanted: &HashSet<&str>) -> HashMap<(String, String), u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((addr, rest)) = line.split_once(' ') else {
            continue;
        };
        let (name, module) = match rest.split_once(' ') {
            Some((name, module)) => (name, module.trim_matches(['[', ']'])),
            None => (rest, "vmlinux"),
        };
        if !wanted.contains(name) {
            continue;
        }
        if let Ok(addr) = u64::from_str_radix(addr, 16) {
            out.entry((module.to_string(), name.to_string()))
                .or_insert(addr);
        }
    }
    out
}

/// Fills in addresses; returns how many candidates the listing does not
/// have separately.
pub fn resolve(candidates: Vec<Candidate>, listing: &Listing) -> (Vec<Candidate>, usize) {
    let wanted: HashSet<&str> = candidates.iter().map(|c| c.target.name.as_str()).collect();
    let addresses = listing.addresses(&wanted);
    let address = match listing.source {
        Source::Kallsyms => Address::Symbol,
        Source::Ftrace => Address::FtraceSite,
    };
    let total = candidates.len();
    let found: Vec<Candidate> = candidates
        .into_iter()
        .filter_map(|mut c| {
            let key = (c.target.module.clone(), c.target.name.clone());
            c.target.addr = *addresses.get(&key)?;
            c.target.address = address;
            Some(c)
        })
        .collect();
    let missing = total - found.len();
    (found, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::candidate;

    /// ip_rcv, `missing` (not in the text) and veth's veth_xmit, resolved
    /// from `text`: each found one's address and kind, and how many are
    /// missing.
    fn resolved(source: Source, text: &str, missing: &str) -> (Vec<(u64, Address)>, usize) {
        let listing = Listing {
            source,
            text: text.into(),
        };
        let cands = vec![
            candidate("ip_rcv", "vmlinux"),
            candidate(missing, "vmlinux"),
            candidate("veth_xmit", "veth"),
        ];
        let (found, missing) = resolve(cands, &listing);
        let got = found.iter().map(|c| (c.target.addr, c.target.address));
        (got.collect(), missing)
    }

    #[test]
    fn ftrace_sites_resolve_per_module_and_say_what_they_are() {
        let text = "\
ffffffff93cdf5f4 ip_rcv
ffffffff93cdf5f4 ip_rcv
ffffffffc0a01004 veth_xmit [veth]
ffffffffc0b01004 veth_xmit [other]
";
        let (got, missing) = resolved(Source::Ftrace, text, "notrace_fn");
        assert_eq!(missing, 1);
        let site = Address::FtraceSite;
        assert_eq!(
            got,
            [(0xffffffff93cdf5f4, site), (0xffffffffc0a01004, site)]
        );
    }

    #[test]
    fn kallsyms_resolves_text_symbols_and_counts_the_rest() {
        let text = "\
ffffffff81a00010 T ip_rcv
ffffffff81a00030 D inlined_fn
ffffffffc0a01000 t veth_xmit\t[veth]
";
        let (got, missing) = resolved(Source::Kallsyms, text, "inlined_fn");
        assert_eq!(missing, 1);
        let symbol = Address::Symbol;
        assert_eq!(
            got,
            [(0xffffffff81a00010, symbol), (0xffffffffc0a01000, symbol)]
        );
    }
}
