//! `-w`: from traced rows to pcapng frames. Each row with bytes goes to the
//! [`Picker`], which says which rows to write; each written row is
//! commented as the table shows it and written by [`Pcapng`]
//! (ipft-output). The picking stays here: it follows the trace stage's
//! records and the targets' roles.
use std::io;

use ipft_common::{Event, LINK_NONE};
use ipft_output::pcapng::{self, Pcapng, Written};

use super::{
    frames::{Picker, Points, Row},
    sink::Sink,
    Extras,
};
use crate::{
    cli::CaptureAt,
    discover::{
        roles::{data_freed, Role},
        Target,
    },
    trace::{group, stream::Frame},
};

/// The pcapng output of a run.
pub struct Captures {
    picker: Picker,
    file: Pcapng<Sink>,
    /// Per target: the packet ends at its rows ([`Role::Frees`]).
    ends: Vec<bool>,
    /// Per target: the data is freed before its rows ([`data_freed`]).
    stale: Vec<bool>,
    /// Rows with a header set whose bytes the program could not read.
    pub unreadable: u64,
    out: Vec<Row>,
}

impl Captures {
    pub fn new(
        capture_at: Option<&CaptureAt>,
        file: Pcapng<Sink>,
        targets: &[Target],
        roles: &[Role],
    ) -> Captures {
        let names = targets.iter().map(|t| t.name.as_str());
        Captures {
            picker: Picker::new(Points::new(capture_at, names)),
            file,
            ends: roles.iter().map(|r| *r == Role::Frees).collect(),
            stale: targets.iter().map(data_freed).collect(),
            unreadable: 0,
            out: Vec::new(),
        }
    }

    /// Takes one row (its event's `func` is the target index) of packet
    /// `packet`, with the frame its record carried, and writes what the
    /// picker says to.
    pub fn take(
        &mut self,
        event: &Event,
        frame: Option<Frame>,
        packet: u32,
        targets: &[Target],
        extras: &Extras,
    ) -> io::Result<()> {
        let func = event.func as usize;
        let row = frame
            .filter(|f| self.shows_bytes(f) && self.stale.get(func) != Some(&true))
            .map(|frame| Row {
                event: *event,
                packet,
                frame,
            });
        let ends = self.ends.get(func) == Some(&true);
        let mut out = std::mem::take(&mut self.out);
        self.picker.take(event.skb, packet, row, ends, &mut out);
        let written = self.write(&mut out, targets, extras);
        self.out = out;
        written
    }

    /// Whether a frame has bytes; counts those whose bytes could not be read.
    fn shows_bytes(&mut self, frame: &Frame) -> bool {
        let c = &frame.capture;
        let readable = c.link == LINK_NONE || c.captured > 0 || c.tail <= u32::from(c.start);
        self.unreadable += u64::from(!readable);
        c.captured > 0 && c.link != LINK_NONE
    }

    fn write(
        &mut self,
        rows: &mut Vec<Row>,
        targets: &[Target],
        extras: &Extras,
    ) -> io::Result<()> {
        for row in rows.drain(..) {
            self.file
                .write(&frame(&row), comment(&row, targets, extras))?;
        }
        Ok(())
    }

    /// Flushes the frames written so far (a reader of `-w -` sees them now).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Writes the last rows of the packets still live and completes the file.
    pub fn finish(mut self, targets: &[Target], extras: &Extras) -> io::Result<Written> {
        let mut out = std::mem::take(&mut self.out);
        self.picker.finish(&mut out);
        self.write(&mut out, targets, extras)?;
        let written = self.file.written;
        self.file.into_inner().finish()?;
        Ok(written)
    }
}

/// The row's frame as pcapng writes it.
fn frame(row: &Row) -> pcapng::Frame<'_> {
    let c = &row.frame.capture;
    pcapng::Frame {
        tstamp: row.event.tstamp,
        netns: c.netns,
        ifindex: c.ifindex,
        link: c.link,
        dev: &row.event.dev,
        original_len: row.frame_len(),
        bytes: &row.frame.bytes,
    }
}

/// The row as the table shows it: `ip_rcv packet 3`, `vxlan_xmit [vxlan]
/// packet 3`, `kfree_skb packet 4 (drop: NO_SOCKET)`.
fn comment(row: &Row, targets: &[Target], extras: &Extras) -> String {
    let record = group::record(&row.event, row.event.func as u32, row.packet);
    let (module, name) = super::names(targets, record.func);
    let mut text = match module {
        "vmlinux" => name.to_string(),
        module => format!("{name} [{module}]"),
    };
    text.push_str(&format!(" packet {}", row.packet));
    if let Some(reason) = extras.reason(&record) {
        text.push_str(&format!(" (drop: {reason})"));
    }
    text
}
