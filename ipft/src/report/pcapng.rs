//! `-w FILE`: the traced packets as pcapng, which Wireshark and tshark open.
//!
//! One section; one interface per (network namespace, device, link type) a
//! frame was seen on, named `dev@netns` (the namespace's inode number, as
//! `ip netns identify` and `/proc/PID/ns/net` show it), declared just
//! before its first frame; one enhanced packet block per frame
//! ([`super::frames`] picks them), stamped with the kernel's time of the
//! row in wall-clock time, and commented with the row as ipft's table shows
//! it: `function packet N (drop: REASON)`. The blocks are written by the
//! `pcap-file` crate, which has each option this needs (interface name and
//! time resolution, packet comments).
use std::{borrow::Cow, collections::HashMap, io, time::Duration};

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

use super::{frames::Row, sink::Sink};

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
    /// Bytes of the file (or stream), headers included.
    pub bytes: u64,
}

/// A pcapng file being written.
pub struct Pcapng {
    writer: PcapNgWriter<Sink>,
    interfaces: HashMap<Place, u32>,
    /// Wall clock minus the monotonic clock the programs stamp events with.
    realtime_offset: i128,
    snaplen: u32,
    pub written: Written,
}

impl Pcapng {
    /// Starts the file in `sink` (the section header) for frames of at most
    /// `snaplen` bytes.
    pub fn new(sink: Sink, snaplen: u32) -> io::Result<Pcapng> {
        let section = SectionHeaderBlock {
            endianness: native_endianness(),
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
    pub fn write(&mut self, row: &Row, comment: String) -> io::Result<()> {
        let interface_id = self.interface(row)?;
        let nanos = i128::from(row.event.tstamp) + self.realtime_offset;
        let block = EnhancedPacketBlock {
            interface_id,
            // pcap-file writes nanoseconds: each interface says so (if_tsresol 9).
            timestamp: Duration::from_nanos(nanos.clamp(0, i128::from(u64::MAX)) as u64),
            original_len: row.frame_len(),
            data: Cow::Borrowed(&row.frame.bytes),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.block(block)?;
        self.written.frames += 1;
        Ok(())
    }

    /// Flushes, so that a reader of a stream has every frame so far.
    pub fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(self.writer.get_mut())
    }

    /// Completes the file (a stream on stdout then ends).
    pub fn finish(self) -> io::Result<()> {
        self.writer.into_inner().finish()
    }

    /// The id of `row`'s interface, declared now if it is new.
    fn interface(&mut self, row: &Row) -> io::Result<u32> {
        let c = &row.frame.capture;
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
                InterfaceDescriptionOption::IfName(Cow::Owned(interface_name(row))),
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
fn interface_name(row: &Row) -> String {
    let c = &row.frame.capture;
    if c.ifindex == 0 {
        return "(no device)".into();
    }
    let dev = &row.event.dev;
    let end = dev.iter().position(|&b| b == 0).unwrap_or(dev.len());
    format!("{}@{}", String::from_utf8_lossy(&dev[..end]), c.netns)
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
