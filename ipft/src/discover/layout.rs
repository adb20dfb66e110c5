//! The kernel's layout for this run, read from BTF once and handed to
//! select whole: the struct offsets the programs read with, the
//! `bpf_rdonly_cast` ids, and for `-f` every `struct sk_buff` field's offset.
use anyhow::{Context, Result};
use ipft_common::{CaptureOffsets, Offsets, PlaceOffsets};

use super::{
    btf::Vmlinux,
    offsets::{capture_offsets, offsets, place_offsets, rdonly_cast_ids, skb_members},
};
use crate::cli::Options;
use ipft_filter::Cast;

/// What the options need read beyond the offsets every run uses: each
/// struct lookup scans the types, so the others are read only when needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `-w`: where the frame's bytes are.
    pub capture: bool,
    /// `-w`, `--netns`, `--dev`: where the device, socket and namespace are.
    pub place: bool,
    /// `-f` (not with `-l`): every `sk_buff` field, for the filter's code.
    pub skb_fields: bool,
}

impl Needs {
    pub fn of(opts: &Options) -> Self {
        let write = opts.write.is_some();
        Needs {
            capture: write,
            place: write || opts.netns.is_some() || opts.dev.is_some(),
            skb_fields: opts.filter.is_some() && !opts.list,
        }
    }
}

/// The kernel's layout: what a field not needed ([`Needs`]) is left at
/// its default (or `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub offsets: Offsets,
    pub capture: CaptureOffsets,
    pub place: PlaceOffsets,
    /// `None` on a kernel without `bpf_rdonly_cast` (before 6.2).
    pub cast: Option<Cast>,
    pub skb_fields: Option<SkbOffsets>,
}

impl KernelLayout {
    pub fn read(btf: &Vmlinux, needs: Needs) -> Result<Self> {
        Ok(KernelLayout {
            capture: match needs.capture {
                true => capture_offsets(btf)?,
                false => Default::default(),
            },
            place: match needs.place {
                true => place_offsets(btf)?,
                false => Default::default(),
            },
            offsets: offsets(btf)?,
            cast: rdonly_cast_ids(btf),
            skb_fields: match needs.skb_fields {
                true => Some(skb_members(btf)?),
                false => None,
            },
        })
    }
}

/// Every `struct sk_buff` field's byte offset by name, anonymous structs
/// and unions looked into, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkbOffsets(pub Vec<(String, u32)>);

impl SkbOffsets {
    /// The first field called `name` (as a C access would find it).
    pub fn get(&self, name: &str) -> Result<u32> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|&(_, offset)| offset)
            .with_context(|| format!("the kernel's BTF has no sk_buff.{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::btf::tests::running_kernel;

    #[test]
    fn only_what_is_needed_is_read() {
        let kernel = running_kernel();
        let bare = KernelLayout::read(&kernel.vmlinux, Needs::default()).unwrap();
        assert_eq!(bare.capture, CaptureOffsets::default());
        assert_eq!(bare.place, PlaceOffsets::default());
        assert_eq!(bare.skb_fields, None);
        let all = Needs {
            capture: true,
            place: true,
            skb_fields: true,
        };
        let full = KernelLayout::read(&kernel.vmlinux, all).unwrap();
        assert_eq!(full.offsets, bare.offsets);
        assert_ne!(full.capture, CaptureOffsets::default());
        assert_ne!(full.place, PlaceOffsets::default());
        let skb = full.skb_fields.unwrap();
        assert_eq!(skb.get("mark").unwrap(), full.offsets.skb_mark);
        assert_eq!(skb.get("data").unwrap(), full.capture.skb_data);
    }

    #[test]
    fn the_options_say_what_is_needed() {
        use clap::Parser;
        let needs = |args: &[&str]| Needs::of(&Options::parse_from([&["ipft"], args].concat()));
        assert_eq!(needs(&["-m", "1"]), Needs::default());
        let write = needs(&["-m", "1", "-w", "x.pcapng"]);
        assert!(write.capture && write.place && !write.skb_fields);
        let dev = needs(&["--dev", "lo"]);
        assert!(!dev.capture && dev.place);
        assert!(needs(&["-f", "udp"]).skb_fields);
        assert!(!needs(&["-f", "udp", "-l"]).skb_fields);
    }
}
