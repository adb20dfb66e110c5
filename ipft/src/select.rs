//! Select: which packets the programs trace, from the options. Today the
//! mark (`-m`, `--mask`), `--track` and function_graph; it gives the
//! [`Config`] the programs are maps with, the kernel's struct offsets
//! included.
use ipft_common::{Config, Offsets, CONFIG_GRAPH, CONFIG_RDONLY_CAST, CONFIG_TRACK};

use crate::cli::{Options, Tracer};

/// The vmlinux BTF ids a `bpf_rdonly_cast` read of the mark needs (found by
/// `discover::rdonly_cast_ids`): the FUNC `bpf_rdonly_cast`, the kfunc
/// call's immediate, and the STRUCT `sk_buff`, its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RdonlyCastIds {
    pub func: u32,
    pub skb: u32,
}

/// The programs' read-only configuration for this run; `cast` when the
/// kernel has `bpf_rdonly_cast`, which the programs then read the mark with.
pub fn config(opts: &Options, offsets: Offsets, cast: Option<RdonlyCastIds>) -> Config {
    let (cast_flag, skb_btf_id, rdonly_cast_btf_id) = match cast {
        Some(ids) => (CONFIG_RDONLY_CAST, ids.skb, ids.func),
        None => (0, 0, 0),
    };
    Config {
        mark: opts.masked_mark(),
        mask: opts.mask,
        flags: flags(opts) | cast_flag,
        offsets,
        skb_btf_id,
        rdonly_cast_btf_id,
    }
}

/// `Config::flags` for the options.
fn flags(opts: &Options) -> u32 {
    let track = match opts.track {
        true => CONFIG_TRACK,
        false => 0,
    };
    let graph = match opts.tracer {
        Tracer::FunctionGraph => CONFIG_GRAPH,
        Tracer::Function => 0,
    };
    track | graph
}

/// Why the options select no packet sensibly: a mark that is 0 under its
/// mask would match every unmarked packet (ipftrace2 refuses mark 0 too).
pub fn refusal(opts: &Options) -> Option<String> {
    if opts.list || opts.masked_mark() != 0 {
        return None;
    }
    let everything = "would trace every unmarked packet";
    Some(match opts.mark.unwrap_or(0) {
        0 => format!("mark 0 {everything}: choose a non-zero mark"),
        mark => format!(
            "mark {mark:#x} & mask {:#x} is 0, which {everything}: choose a mark with bits inside the mask",
            opts.mask
        ),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::parse_from([&["ipft"], args].concat())
    }

    #[test]
    fn config_carries_the_masked_mark_and_flags() {
        let c = config(
            &opts(&["-m", "0x1f", "--mask", "0xf0", "--track"]),
            Offsets::default(),
            None,
        );
        assert_eq!((c.mark, c.mask, c.flags), (0x10, 0xf0, CONFIG_TRACK));
        let c = config(
            &opts(&["-m", "1", "-t", "function_graph"]),
            Offsets::default(),
            None,
        );
        assert_eq!(c.flags, CONFIG_GRAPH);
    }

    #[test]
    fn the_kfunc_sets_the_cast_flag_and_its_ids() {
        let ids = RdonlyCastIds { func: 7, skb: 9 };
        let c = config(&opts(&["-m", "1"]), Offsets::default(), Some(ids));
        assert_eq!(c.flags, CONFIG_RDONLY_CAST);
        assert_eq!((c.rdonly_cast_btf_id, c.skb_btf_id), (7, 9));
    }

    #[test]
    fn a_mark_that_matches_everything_is_refused() {
        assert!(refusal(&opts(&["-m", "0"]))
            .unwrap()
            .starts_with("mark 0 would"));
        let why = refusal(&opts(&["-m", "0x100", "--mask", "0xff"])).unwrap();
        assert!(why.starts_with("mark 0x100 & mask 0xff is 0"), "{why}");
        assert_eq!(refusal(&opts(&["-m", "1"])), None);
        assert_eq!(refusal(&opts(&["-l"])), None);
    }
}
