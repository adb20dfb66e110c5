//! `-w FILE`: the traced packets as pcapng, which Wireshark and tshark open.
//!
//! One section; one interface per (network namespace, device, link type) a
//! frame was seen on, named `dev@netns` (the namespace's inode number, as
//! `ip netns identify` and `/proc/PID/ns/net` show it), declared just
//! before its first frame; one enhanced packet block per frame
//! (ipft's report stage picks them), stamped with the kernel's time of the
//! row in wall-clock time, and commented with the row as ipft's table shows
//! it: `function packet N (drop: REASON)`. The blocks are written by the
//! `pcap-file` crate, which has each option this needs (interface name and
//! time resolution, packet comments).
use std::{
    borrow::Cow,
    collections::HashMap,
    io::{self, Write},
    time::Duration,
};

use ipft_common::{LINK_ETHERNET, LINK_RAW};
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
        PcapNgBlock, PcapNgWriter,
    },
    DataLink, Endianness, PcapError,
};

/// One frame to write: a row's bytes and where they were seen.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The row's kernel time (`bpf_ktime_get_ns`, the monotonic clock).
    pub tstamp: u64,
    /// The network namespace's inode number.
    pub netns: u32,
    /// 0: not on a device yet.
    pub ifindex: u32,
    /// `LINK_ETHERNET`, `LINK_RAW` (ipft-common), or another link type.
    pub link: u16,
    /// The device's name, NUL-padded as the kernel keeps it.
    pub dev: &'a [u8],
    /// Bytes of the packet from the frame's first byte (at least `bytes`).
    pub original_len: u32,
    /// The captured bytes.
    pub bytes: &'a [u8],
}

/// An interface: where and how frames were seen.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
struct Place {
    netns: u32,
    ifindex: u32,
    link: u16,
}

/// What was written, for the closing lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub frames: u64,
    /// Bytes of the blocks after the section header (interfaces, frames).
    pub bytes: u64,
}

/// A pcapng file being written to `W`.
pub struct Pcapng<W: Write> {
    writer: PcapNgWriter<W>,
    interfaces: HashMap<Place, u32>,
    /// Wall clock minus the monotonic clock the programs stamp events with.
    realtime_offset: i128,
    snaplen: u32,
    pub written: Written,
}

impl<W: Write> Pcapng<W> {
    /// Starts the file in `sink` (the section header) for frames of at most
    /// `snaplen` bytes.
    pub fn new(sink: W, snaplen: u32) -> io::Result<Pcapng<W>> {
        let section = SectionHeaderBlock {
            endianness: native_endianness(),
            // The workspace's version, which ipft has too.
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                concat!("ipft ", env!("CARGO_PKG_VERSION")),
            ))],
            ..SectionHeaderBlock::default()
        };
        let writer = PcapNgWriter::with_section_header(sink, section).map_err(io_error)?;
        Ok(Pcapng {
            writer,
            interfaces: HashMap::new(),
            realtime_offset: realtime_offset(),
            snaplen,
            written: Written::default(),
        })
    }

    /// Writes one frame, declaring its interface first if it is new.
    pub fn write(&mut self, frame: &Frame, comment: String) -> io::Result<()> {
        let interface_id = self.interface(frame)?;
        let nanos = i128::from(frame.tstamp) + self.realtime_offset;
        let block = EnhancedPacketBlock {
            interface_id,
            // pcap-file writes nanoseconds: each interface says so (if_tsresol 9).
            timestamp: Duration::from_nanos(nanos.clamp(0, i128::from(u64::MAX)) as u64),
            original_len: frame.original_len,
            data: Cow::Borrowed(frame.bytes),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.block(block)?;
        self.written.frames += 1;
        Ok(())
    }

    /// Flushes, so that a reader of a stream has every frame so far.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.get_mut().flush()
    }

    /// The file's writer, every block written to it.
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }

    /// The id of `frame`'s interface, declared now if it is new.
    fn interface(&mut self, frame: &Frame) -> io::Result<u32> {
        let c = frame;
        let place = Place {
            netns: c.netns,
            ifindex: c.ifindex,
            link: c.link,
        };
        if let Some(&id) = self.interfaces.get(&place) {
            return Ok(id);
        }
        let linktype = match c.link {
            LINK_ETHERNET => DataLink::ETHERNET,
            LINK_RAW => DataLink::RAW,
            other => DataLink::Unknown(u32::from(other)),
        };
        let block = InterfaceDescriptionBlock {
            linktype,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(interface_name(frame))),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "ifindex {} in network namespace {}",
                    c.ifindex, c.netns
                ))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.block(block)?;
        let id = self.interfaces.len() as u32;
        self.interfaces.insert(place, id);
        Ok(id)
    }

    fn block<'a>(&mut self, block: impl PcapNgBlock<'a>) -> io::Result<()> {
        let bytes = self.writer.write_pcapng_block(block).map_err(io_error)?;
        self.written.bytes += bytes as u64;
        Ok(())
    }
}

/// `dev@netns`, or `(no device)` for a packet not yet on one.
fn interface_name(frame: &Frame) -> String {
    if frame.ifindex == 0 {
        return "(no device)".into();
    }
    let dev = frame.dev;
    let end = dev.iter().position(|&b| b == 0).unwrap_or(dev.len());
    format!("{}@{}", String::from_utf8_lossy(&dev[..end]), frame.netns)
}

fn native_endianness() -> Endianness {
    match cfg!(target_endian = "little") {
        true => Endianness::Little,
        false => Endianness::Big,
    }
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC in nanoseconds, read once: events carry
/// `bpf_ktime_get_ns()`, the monotonic clock.
fn realtime_offset() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let monotonic = now(libc::CLOCK_MONOTONIC);
    now(libc::CLOCK_REALTIME) - monotonic
}

fn io_error(err: PcapError) -> io::Error {
    match err {
        PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use ipft_common::LINK_ETHERNET;
    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;

    #[test]
    fn frames_declare_their_interface_once_and_keep_their_comment() {
        let mut file = Pcapng::new(Vec::new(), 262144).unwrap();
        let frame = Frame {
            tstamp: 1,
            netns: 4026531840,
            ifindex: 1,
            link: LINK_ETHERNET,
            dev: b"lo\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            original_len: 98,
            bytes: &[0xab; 64],
        };
        file.write(&frame, "ip_rcv packet 1".into()).unwrap();
        let unplaced = Frame {
            ifindex: 0,
            ..frame
        };
        file.write(&frame, "kfree_skb packet 1".into()).unwrap();
        file.write(&unplaced, "skb_clone packet 2".into()).unwrap();
        let written = file.written;
        let bytes = file.into_inner();
        // The section header, written first, is not counted.
        assert_eq!(written.frames, 3);
        assert!(written.bytes > 3 * 64 && written.bytes < bytes.len() as u64);
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut seen = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::ETHERNET);
                    let name = idb.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    });
                    seen.push(format!("interface {}", name.unwrap()));
                }
                Block::EnhancedPacket(epb) => {
                    assert_eq!((epb.original_len, epb.data.len()), (98, 64));
                    let comment = epb.options.iter().find_map(|o| match o {
                        EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                        _ => None,
                    });
                    seen.push(format!("{} on {}", comment.unwrap(), epb.interface_id));
                }
                _ => {}
            }
        }
        assert_eq!(
            seen,
            [
                "interface lo@4026531840",
                "ip_rcv packet 1 on 0",
                "kfree_skb packet 1 on 0",
                "interface (no device)",
                "skb_clone packet 2 on 1",
            ]
        );
    }
}
