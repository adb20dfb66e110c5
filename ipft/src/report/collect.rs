//! Turning events into output: each event is named to its packet, then
//! streamed as a json line or stored for the table printed at the end; with
//! `-w`, its bytes also go to the pcapng file.
use std::{
    collections::HashMap,
    io::{self, Write},
};

use anyhow::Result;

use super::pcapng::Pcapng;
use super::{
    capture::Captures,
    json::{self, JsonSeen},
    pcapng::Written,
    sink::{ok_unless_closed, Sink},
    table, Extras,
};
use crate::{
    cli::{Options, Output, Tracer},
    discover::{roles::Role, Target},
    timing,
    trace::{
        group::{self, Packets},
        packets::PacketIds,
        stream,
    },
};

/// Why tracing stopped.
pub enum Stop {
    Signal,
    Duration,
    MaxTraces,
    StdoutClosed,
    Command(u8),
}

/// What the run saw, for the closing lines on stderr.
#[derive(Default)]
pub struct Tally {
    pub seen: u64,
    pub lost: u64,
    pub bad: u64,
    /// Events seen once `max_events` were stored: counted, not shown.
    pub unstored: u64,
    /// `-w`: what was written, and the rows whose bytes could not be read.
    pub written: Option<Written>,
    pub unreadable: u64,
}

/// Turns events into output: names packets, then streams json lines or
/// stores records for the table.
pub struct Collector {
    opts: Options,
    targets: Vec<Target>,
    reasons: HashMap<u32, String>,
    ids: PacketIds,
    packets: Packets,
    /// Aggregate mode stores no more events than this (`--max-events`).
    max_events: u64,
    sink: Sink,
    /// `-w`.
    captures: Option<Captures>,
    pub tally: Tally,
}

impl Collector {
    /// A collector for the events of `targets` (whose [`Role`]s are
    /// `roles`), writing to `sink`, and with `-w` frames to `captures`.
    pub fn new(
        opts: &Options,
        targets: Vec<Target>,
        roles: Vec<Role>,
        reasons: HashMap<u32, String>,
        sink: Sink,
        captures: Option<Pcapng>,
    ) -> Self {
        let max_events = opts
            .max_events
            .unwrap_or_else(|| group::default_max_events(!opts.field.is_empty()));
        let captures = captures.map(|file| Captures::new(opts, file, &targets, &roles));
        Collector {
            opts: opts.clone(),
            targets,
            reasons,
            ids: PacketIds::new(roles),
            packets: Packets::new(),
            max_events,
            sink,
            captures,
            tally: Tally::default(),
        }
    }

    /// Events stored for the table, and packets named.
    pub fn stored(&self) -> (usize, usize) {
        (self.packets.events(), self.ids.count())
    }

    /// Takes one batch. Returns why to stop, if this batch is a reason to.
    pub fn consume(&mut self, mut batch: stream::Batch) -> Result<Option<Stop>> {
        let mut stop = None;
        if let Some(max) = self.opts.max_traces {
            let room = max.saturating_sub(self.tally.seen);
            if batch.events.len() as u64 >= room {
                batch.truncate(room as usize);
                stop = Some(Stop::MaxTraces);
            }
        }
        self.tally.seen += batch.events.len() as u64;
        self.tally.lost += batch.lost;
        self.tally.bad += batch.bad;
        let keep_fields = !self.opts.field.is_empty();
        let json = self.opts.output == Output::Json;
        let mut frames = batch.frames.into_iter();
        for event in &batch.events {
            let func = event.func as u32;
            let seen = self.ids.observe(event, func);
            if let Some(captures) = &mut self.captures {
                let extras = Extras {
                    reasons: Some(&self.reasons),
                    ..Extras::default()
                };
                let frame = frames.next().flatten();
                let taken = captures.take(event, frame, seen.packet, &self.targets, &extras);
                if !ok_unless_closed(taken)? {
                    return Ok(Some(Stop::StdoutClosed));
                }
            }
            let record = group::record(event, func, seen.packet);
            if json {
                let extras = Extras {
                    reasons: Some(&self.reasons),
                    fields: &self.opts.field,
                    details: None,
                };
                let snapshot = keep_fields.then_some(event);
                let seen = JsonSeen {
                    summary: seen.summary.as_deref(),
                    parent: seen.parent,
                };
                let written = json::event(
                    &mut self.sink,
                    &record,
                    &self.targets,
                    &extras,
                    seen,
                    snapshot,
                );
                if !ok_unless_closed(written)? {
                    return Ok(Some(Stop::StdoutClosed));
                }
            } else if (self.packets.events() as u64) < self.max_events {
                self.packets
                    .push_event(record, seen, keep_fields.then_some(event));
            } else {
                self.tally.unstored += 1;
            }
        }
        if json && !ok_unless_closed(self.sink.flush())? {
            return Ok(Some(Stop::StdoutClosed));
        }
        if let Some(captures) = &mut self.captures {
            if !ok_unless_closed(captures.flush())? {
                return Ok(Some(Stop::StdoutClosed));
            }
        }
        Ok(stop)
    }

    /// Completes the pcapng file (`-w`), prints the table (aggregate mode)
    /// and closes the output; gives what the run saw.
    pub fn finish(mut self, verbose: bool) -> (io::Result<()>, Tally) {
        let mut tally = std::mem::take(&mut self.tally);
        let mut captured = Ok(());
        if let Some(captures) = self.captures.take() {
            tally.unreadable = captures.unreadable;
            let extras = Extras {
                reasons: Some(&self.reasons),
                ..Extras::default()
            };
            captured = captures.finish(&self.targets, &extras).map(|written| {
                tally.written = Some(written);
            });
            timing::step(verbose, "pcapng written");
        }
        // The table is printed even when the pcapng reader has gone.
        let printed = self.print(verbose);
        (captured.and(printed), tally)
    }

    fn print(mut self, verbose: bool) -> io::Result<()> {
        if self.opts.output == Output::Aggregate {
            let (groups, details) = std::mem::take(&mut self.packets).into_groups();
            timing::step(verbose, "events grouped per packet");
            let extras = Extras {
                reasons: Some(&self.reasons),
                fields: &self.opts.field,
                details: Some(&details),
            };
            let graph = self.opts.tracer == Tracer::FunctionGraph;
            table::aggregate(&mut self.sink, &groups, &self.targets, graph, &extras)?;
        }
        self.sink.finish()
    }
}
