//! Select: which packets the programs trace, from the options: the mark
//! (`-m`, `--mask`), the `-f` filter, the namespace and device (`--netns`,
//! `--dev`: `place.rs` resolves them once), `--track`, function_graph, and
//! whether matched packets' bytes are sent (`-w`, `--snaplen`). It
//! gives the [`Config`] the programs are loaded with, the kernel's struct
//! offsets included, and the `-f` filter: compiled by libpcap for Ethernet
//! and for raw IP, decoded, and translated to the eBPF function injected
//! into every program at load (ipft-filter's `pcap`, `cbpf`, `translate`).
mod place;

use anyhow::{bail, Result};
use ipft_common::{
    Config, CONFIG_CAPTURE, CONFIG_DEV, CONFIG_FILTER, CONFIG_GRAPH, CONFIG_NETNS,
    CONFIG_RDONLY_CAST, CONFIG_STACK, CONFIG_STACK_DROPS, CONFIG_TRACK,
};
use ipft_filter::{cbpf, insn::Insn, pcap, translate};

pub use self::place::{resolve as resolve_place, Place};
use crate::{
    cli::{Options, Stacks, Tracer},
    discover::KernelLayout,
};
pub use ipft_filter::SkbFields;

/// The programs' read-only configuration for this run, for the kernel's
/// `layout`. Without `-m` the mask is 0: the programs then read no mark.
/// `place` is where `--netns` and `--dev` select packets; the layout's
/// `cast` is there when the kernel has `bpf_rdonly_cast`, which the
/// programs then read the mark with.
pub fn config(opts: &Options, layout: &KernelLayout, place: Option<Place>) -> Config {
    let (cast_flag, skb_btf_id, rdonly_cast_btf_id) = match layout.cast {
        Some(ids) => (CONFIG_RDONLY_CAST, ids.skb, ids.func),
        None => (0, 0, 0),
    };
    let (place_flags, netns, ifindex) = match place {
        Some(Place {
            netns,
            ifindex: Some(ifindex),
        }) => (CONFIG_NETNS | CONFIG_DEV, netns, ifindex),
        Some(Place {
            netns,
            ifindex: None,
        }) => (CONFIG_NETNS, netns, 0),
        None => (0, 0, 0),
    };
    let mask = match opts.mark {
        Some(_) => opts.mask,
        None => 0,
    };
    Config {
        mark: opts.masked_mark(),
        mask,
        flags: flags(opts) | cast_flag | place_flags,
        snaplen: opts.snaplen,
        offsets: layout.offsets,
        capture: layout.capture,
        place: layout.place,
        skb_btf_id,
        rdonly_cast_btf_id,
        netns,
        ifindex,
    }
}

/// `Config::flags` for the options.
fn flags(opts: &Options) -> u32 {
    let track = match opts.tracks() {
        true => CONFIG_TRACK,
        false => 0,
    };
    let graph = match opts.tracer {
        Tracer::FunctionGraph => CONFIG_GRAPH,
        Tracer::Function => 0,
    };
    let filter = match opts.filter {
        Some(_) => CONFIG_FILTER,
        None => 0,
    };
    let capture = match opts.write {
        Some(_) => CONFIG_CAPTURE,
        None => 0,
    };
    let stack = match opts.stack {
        Some(Stacks::All) => CONFIG_STACK,
        Some(Stacks::Drops) => CONFIG_STACK_DROPS,
        None => 0,
    };
    track | graph | filter | capture | stack
}

/// Why the options select no packet sensibly: a mark that is 0 under its
/// mask would match every unmarked packet (ipftrace2 refuses mark 0 too),
/// unless a filter, namespace or device narrows it.
pub fn refusal(opts: &Options) -> Option<String> {
    if opts.list || opts.selects() || opts.masked_mark() != 0 {
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

/// A `-f` expression compiled by libpcap for packets that start at their
/// Ethernet header and for packets that start at their IP header, decoded:
/// ready to translate for the running kernel.
pub struct Filter {
    pub expression: String,
    ethernet: Vec<cbpf::Op>,
    raw_ip: Vec<cbpf::Op>,
}

/// `ret #0`: what a link-layer expression (`ether host`, `vlan`) becomes
/// for packets without a MAC header, as libpcap's own `arp` does there.
const NO_MATCH: [pcap::Classic; 1] = [pcap::Classic {
    code: 0x06,
    jt: 0,
    jf: 0,
    k: 0,
}];

impl Filter {
    /// Compiles `expression`. The error is one sentence: libpcap's reason,
    /// or what ipft cannot translate.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let quoted = quote(expression);
        let ethernet = pcap::compile(expression, pcap::ETHERNET)
            .map_err(|why| format!("libpcap rejects the filter {quoted}: {why}"))?;
        let raw_ip = pcap::compile(expression, pcap::RAW_IP).unwrap_or_else(|_| NO_MATCH.to_vec());
        let decode = |program: &[pcap::Classic]| {
            cbpf::decode(program).map_err(|what| {
                format!("the filter {quoted} compiles to {what}, which ipft cannot translate")
            })
        };
        Ok(Filter {
            expression: expression.to_string(),
            ethernet: decode(&ethernet)?,
            raw_ip: decode(&raw_ip)?,
        })
    }

    /// The filter function, for the kernel's layout (read with
    /// `skb_fields`).
    pub fn function(&self, layout: &KernelLayout) -> Result<Vec<Insn>> {
        let Some(offsets) = &layout.skb_fields else {
            bail!("the kernel's sk_buff fields were not read for the filter");
        };
        let mut skb = SkbFields::find(|name| offsets.get(name))?;
        skb.cast = layout.cast;
        self.translate(&skb)
    }

    /// The filter function, for this kernel's skb layout.
    pub fn translate(&self, skb: &SkbFields) -> Result<Vec<Insn>> {
        match translate::translate(&self.ethernet, &self.raw_ip, skb) {
            Ok(insns) => Ok(insns),
            Err(len) => bail!(
                "the filter {} is too long: its {len} eBPF instructions are more than a jump can cross ({})",
                quote(&self.expression),
                translate::MAX_JUMP
            ),
        }
    }
}

/// The expression as an error quotes it: whole up to [`QUOTED`] characters,
/// else its start and end around an ellipsis (a generated filter can be
/// tens of kilobytes, and the error is one line).
fn quote(expression: &str) -> String {
    let chars: Vec<char> = expression.chars().collect();
    if chars.len() <= QUOTED {
        return format!("'{expression}'");
    }
    let head: String = chars[..QUOTED / 2].iter().collect();
    let tail: String = chars[chars.len() - QUOTED / 2..].iter().collect();
    let (head, tail) = (head.trim_end(), tail.trim_start());
    format!("'{head} … {tail}' ({} characters)", chars.len())
}

const QUOTED: usize = 120;

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::parse_from([&["ipft"], args].concat())
    }

    fn layout() -> KernelLayout {
        KernelLayout::default()
    }

    #[test]
    fn config_carries_the_masked_mark_and_flags() {
        let c = config(
            &opts(&["-m", "0x1f", "--mask", "0xf0", "--track"]),
            &layout(),
            None,
        );
        assert_eq!((c.mark, c.mask, c.flags), (0x10, 0xf0, CONFIG_TRACK));
        let c = config(&opts(&["-m", "1", "-t", "function_graph"]), &layout(), None);
        assert_eq!(c.flags, CONFIG_GRAPH);
        let c = config(
            &opts(&["-m", "1", "-w", "-", "--snaplen", "100"]),
            &layout(),
            None,
        );
        assert_eq!((c.flags, c.snaplen), (CONFIG_CAPTURE, 100));
    }

    #[test]
    fn the_kfunc_sets_the_cast_flag_and_its_ids() {
        let layout = KernelLayout {
            cast: Some(ipft_filter::Cast {
                func: 7,
                skb: 9,
                bytes: None,
                bytes_len: 0,
            }),
            ..KernelLayout::default()
        };
        let c = config(&opts(&["-m", "1"]), &layout, None);
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

    #[test]
    fn a_filter_needs_no_mark() {
        let alone = opts(&["-f", "udp"]);
        assert_eq!(refusal(&alone), None);
        let c = config(&alone, &layout(), None);
        assert_eq!(
            (c.mark, c.mask, c.flags),
            (0, 0, CONFIG_FILTER | CONFIG_TRACK)
        );
        // With -m, both must match: the mark test stays.
        let both = opts(&["-f", "udp", "-m", "0x10", "--mask", "0xf0", "--no-track"]);
        let c = config(&both, &layout(), None);
        assert_eq!((c.mark, c.mask, c.flags), (0x10, 0xf0, CONFIG_FILTER));
    }

    #[test]
    fn a_namespace_or_device_needs_no_mark_and_sets_its_values() {
        let netns = opts(&["--netns", "blue"]);
        assert_eq!(refusal(&netns), None);
        let place = Place {
            netns: 4026532000,
            ifindex: None,
        };
        let c = config(&netns, &layout(), Some(place));
        assert_eq!((c.mask, c.flags), (0, CONFIG_NETNS | CONFIG_TRACK));
        assert_eq!((c.netns, c.ifindex), (4026532000, 0));
        // A device is one of a namespace: both are compared.
        let dev = opts(&["--dev", "eth0", "-f", "udp", "--no-track"]);
        assert_eq!(refusal(&dev), None);
        let place = Place {
            netns: 4026531840,
            ifindex: Some(2),
        };
        let c = config(&dev, &layout(), Some(place));
        assert_eq!(c.flags, CONFIG_NETNS | CONFIG_DEV | CONFIG_FILTER);
        assert_eq!((c.netns, c.ifindex), (4026531840, 2));
    }

    #[test]
    fn filter_errors_are_one_sentence() {
        let err = Filter::compile("tcp port 80 and").err().unwrap();
        assert_eq!(
            err,
            "libpcap rejects the filter 'tcp port 80 and': can't parse filter expression: syntax error"
        );
        let err = Filter::compile("ip6 protochain 6").err().unwrap();
        assert_eq!(
            err,
            "the filter 'ip6 protochain 6' compiles to a backward jump (libpcap's protochain), which ipft cannot translate"
        );
    }

    #[test]
    fn a_long_filter_is_quoted_by_its_ends() {
        let long: Vec<String> = (0..100).map(|i| format!("port {i}")).collect();
        let long = long.join(" or ");
        let quoted = quote(&long);
        assert!(quoted.starts_with("'port 0 or port 1 or "), "{quoted}");
        assert!(
            quoted.ends_with(" or port 99' (1086 characters)"),
            "{quoted}"
        );
        assert!(quoted.contains(" … "), "{quoted}");
        assert_eq!(quote("udp"), "'udp'");
    }

    #[test]
    fn a_link_layer_filter_matches_nothing_without_a_mac_header() {
        let filter = Filter::compile("ether host 1:2:3:4:5:6").unwrap();
        assert_eq!(
            filter.raw_ip,
            [cbpf::Op::Return(cbpf::Verdict::NoMatch)],
            "libpcap has no raw IP form of it"
        );
        assert!(filter.ethernet.len() > 1);
    }
}
