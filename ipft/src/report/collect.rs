//! Turning events into output: each event is named to its packet, then
//! streamed as a json line or stored for the table printed at the end; with
//! `-w`, its bytes also go to the pcapng file.
use std::{
    collections::HashMap,
    io::{self, Write},
    os::fd::OwnedFd,
};

use anyhow::Result;

use super::pcapng::Pcapng;
use super::{
    capture::Captures,
    fate::{self, Told},
    json::{self, JsonSeen},
    names,
    pcapng::Written,
    sink::{ok_unless_closed, Sink},
    sites::{self, Sites},
    table, Extras,
};
use crate::{
    cli::{Options, Output, Tracer},
    discover::{roles, roles::Role, Target},
    timing,
    trace::{
        fate::Fates,
        group::{self, Located, Packets},
        packets::PacketIds,
        stream,
    },
};
use ipft_common::Event;

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
    /// How the packets ended, in one line (none without packets).
    pub fates: Option<String>,
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
    fates: Fates,
    /// How many packets ended with each fate (summary wording), the packets
    /// themselves forgotten: json's, and those past `--max-events`.
    ended: HashMap<String, usize>,
    /// Names callers and stacks.
    sites: Sites,
    pub tally: Tally,
}

impl Collector {
    /// A collector for the events of `targets` (whose [`Role`]s are
    /// `roles`), writing to `sink`, and with `-w` frames to `captures`;
    /// `stacks` is the `STACKS` map, which stacks are read from.
    pub fn new(
        opts: &Options,
        targets: Vec<Target>,
        roles: Vec<Role>,
        reasons: HashMap<u32, String>,
        sink: Sink,
        captures: Option<Pcapng>,
        stacks: Option<OwnedFd>,
    ) -> Self {
        let max_events = opts
            .max_events
            .unwrap_or_else(|| group::default_max_events(!opts.field.is_empty()));
        let captures = captures.map(|file| Captures::new(opts, file, &targets, &roles));
        let fates = Fates::new(roles::steps(&targets), roles.clone(), &reasons);
        Collector {
            opts: opts.clone(),
            targets,
            reasons,
            fates,
            ended: HashMap::new(),
            sites: Sites::new(stacks),
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
            let ended = self.fates.observe(seen.packet, event, func).cloned();
            let record = group::record(event, func, seen.packet);
            let located = self.locate(event, func);
            let packet = seen.packet;
            if json {
                let fate = ended.map(|f| self.count_and_forget(packet, &f).json);
                let extras = Extras {
                    reasons: Some(&self.reasons),
                    fields: &self.opts.field,
                    details: None,
                };
                let snapshot = keep_fields.then_some(event);
                let seen = JsonSeen {
                    summary: seen.summary.as_deref(),
                    parent: seen.parent,
                    located: located.as_ref(),
                    fate: fate.as_ref(),
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
                let snapshot = (keep_fields || located.is_some()).then_some(event);
                self.packets.push_event(record, seen, snapshot, located);
            } else {
                self.tally.unstored += 1;
                // Past --max-events: a packet the table will not show is
                // only counted.
                if let Some(f) = ended.filter(|_| !self.packets.holds(packet)) {
                    self.count_and_forget(packet, &f);
                }
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

    /// Where a row was called from: a dropping row's caller, and its stack
    /// when it recorded one; `None` for most rows.
    fn locate(&mut self, event: &Event, func: u32) -> Option<Located> {
        let stack_id = sites::stack_id(event);
        let drops = self.fates.drops(event, func);
        if !drops && stack_id.is_none() {
            return None;
        }
        let caller = match drops {
            true => {
                let (_, function) = names(&self.targets, func);
                let site = self.sites.caller(event.caller, stack_id, function);
                site.map(|s| s.full)
            }
            false => None,
        };
        let stack = self.sites.stack(event).unwrap_or_default();
        Some(Located {
            caller,
            stack: stack.into_iter().map(|s| s.full).collect(),
        })
    }

    /// Counts the fate of a packet that ended, for the summary, and
    /// forgets the packet; gives the fate in words.
    fn count_and_forget(&mut self, packet: u32, fate: &crate::trace::fate::Fate) -> Told {
        let told = self.tell(fate);
        self.fates.forget(packet);
        *self.ended.entry(told.count_as.clone()).or_default() += 1;
        told
    }

    fn tell(&mut self, fate: &crate::trace::fate::Fate) -> Told {
        fate::tell(fate, &self.targets, &self.reasons, &mut self.sites)
    }

    /// The fates of the packets the table shows, in words, by packet
    /// number; and each fate's count for the summary, over every packet
    /// (json's already forgotten included). One packet at a time: a flood
    /// leaves hundreds of thousands, most of them counted, not stored.
    fn told(&mut self) -> (HashMap<u32, String>, HashMap<String, usize>) {
        let fates = std::mem::take(&mut self.fates).into_map();
        let mut counts = std::mem::take(&mut self.ended);
        let mut texts = HashMap::new();
        for (packet, fate) in fates {
            let told = self.tell(&fate);
            *counts.entry(told.count_as).or_default() += 1;
            if self.packets.holds(packet) {
                texts.insert(packet, told.text);
            }
        }
        (texts, counts)
    }

    /// Completes the pcapng file (`-w`), prints the table (aggregate mode)
    /// and closes the output; gives what the run saw.
    pub fn finish(mut self, verbose: bool) -> (io::Result<()>, Tally) {
        let mut tally = std::mem::take(&mut self.tally);
        let (told, counts) = self.told();
        if !counts.is_empty() {
            tally.fates = Some(fate::summary(counts.iter().map(|(k, n)| (k.as_str(), *n))));
        }
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
        let printed = self.print(verbose, told);
        (captured.and(printed), tally)
    }

    fn print(mut self, verbose: bool, told: HashMap<u32, String>) -> io::Result<()> {
        if self.opts.output == Output::Aggregate {
            let (groups, mut details) = std::mem::take(&mut self.packets).into_groups();
            details.fates = told;
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
