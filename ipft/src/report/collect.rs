//! Turning events into output: each event, followed to its packet by the
//! trace stage, is streamed as a json line or stored for the table printed
//! at the end; with `-w`, its bytes also go to the pcapng file. The run's
//! side of the report: it converts to ipft-output's inputs.
use std::{
    collections::HashMap,
    io::{self, Write},
    os::fd::OwnedFd,
};

use anyhow::Result;

use ipft_output::pcapng::{Pcapng, Written};

use super::{
    capture::Captures,
    fate::{self, Told},
    json::{self, JsonSeen},
    names,
    sink::{ok_unless_closed, Sink},
    sites::{self, Sites},
    table, Extras,
};
use crate::{
    cli::{CaptureAt, Field, Output},
    discover::{roles::Role, Target},
    timing,
    trace::{
        fate::Fate,
        follow::{Followed, Follower},
        group::Located,
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

/// What the report needs of the options.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `-o`.
    pub output: Output,
    /// `--field`, in the order given.
    pub fields: Vec<Field>,
    /// `-t function_graph`: return rows show their values.
    pub graph: bool,
    /// `--max-traces`: stop after this many events.
    pub max_traces: Option<u64>,
    /// `--max-events`: the table stores no more.
    pub max_events: Option<u64>,
    /// `--capture-at` (`-w`).
    pub capture_at: Option<CaptureAt>,
}

/// Turns events into output: streams json lines or stores records for the
/// table, as the trace stage follows them.
pub struct Collector {
    settings: Settings,
    targets: Vec<Target>,
    reasons: HashMap<u32, String>,
    /// Names packets, follows their fates, groups the table's rows.
    follower: Follower,
    sink: Sink,
    /// `-w`.
    captures: Option<Captures>,
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
        settings: Settings,
        targets: Vec<Target>,
        roles: Vec<Role>,
        reasons: HashMap<u32, String>,
        sink: Sink,
        captures: Option<Pcapng<Sink>>,
        stacks: Option<OwnedFd>,
    ) -> Self {
        let capture_at = settings.capture_at.as_ref();
        let captures = captures.map(|file| Captures::new(capture_at, file, &targets, &roles));
        let with_fields = !settings.fields.is_empty();
        let follower = Follower::new(&targets, roles, &reasons, settings.max_events, with_fields);
        Collector {
            settings,
            targets,
            reasons,
            follower,
            ended: HashMap::new(),
            sites: Sites::new(stacks),
            sink,
            captures,
            tally: Tally::default(),
        }
    }

    /// Events stored for the table, and packets named.
    pub fn stored(&self) -> (usize, usize) {
        self.follower.stored()
    }

    /// Takes one batch. Returns why to stop, if this batch is a reason to.
    pub fn consume(&mut self, mut batch: stream::Batch) -> Result<Option<Stop>> {
        let mut stop = None;
        if let Some(max) = self.settings.max_traces {
            let room = max.saturating_sub(self.tally.seen);
            if batch.events.len() as u64 >= room {
                batch.truncate(room as usize);
                stop = Some(Stop::MaxTraces);
            }
        }
        self.tally.seen += batch.events.len() as u64;
        self.tally.lost += batch.lost;
        self.tally.bad += batch.bad;
        let json = self.settings.output == Output::Json;
        let mut frames = batch.frames.into_iter();
        for event in &batch.events {
            let followed = self.follower.follow(event);
            if let Some(captures) = &mut self.captures {
                let extras = Extras {
                    reasons: Some(&self.reasons),
                    ..Extras::default()
                };
                let frame = frames.next().flatten();
                let packet = followed.seen.packet;
                let taken = captures.take(event, frame, packet, &self.targets, &extras);
                if !ok_unless_closed(taken)? {
                    return Ok(Some(Stop::StdoutClosed));
                }
            }
            let located = self.locate(event, followed.drops);
            let shown = match json {
                true => self.write_json(event, followed, located.as_ref()),
                false => self.store(event, followed, located),
            };
            if !ok_unless_closed(shown)? {
                return Ok(Some(Stop::StdoutClosed));
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
    fn locate(&mut self, event: &Event, drops: bool) -> Option<Located> {
        let stack_id = sites::stack_id(event);
        if !drops && stack_id.is_none() {
            return None;
        }
        let caller = match drops {
            true => {
                let (_, function) = names(&self.targets, event.func as u32);
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

    /// Writes the event's json line, with its packet's fate when it ended.
    fn write_json(
        &mut self,
        event: &Event,
        followed: Followed,
        located: Option<&Located>,
    ) -> io::Result<()> {
        let Followed {
            seen,
            record,
            ended,
            ..
        } = followed;
        let fate = ended.map(|f| self.count_and_forget(seen.packet, &f).json);
        let extras = Extras {
            reasons: Some(&self.reasons),
            fields: &self.settings.fields,
            ..Extras::default()
        };
        let snapshot = (!self.settings.fields.is_empty()).then_some(event);
        let seen = JsonSeen {
            summary: seen.summary.as_deref(),
            parent: seen.parent,
            located,
            fate: fate.as_ref(),
        };
        json::event(
            &mut self.sink,
            &record,
            &self.targets,
            &extras,
            seen,
            snapshot,
        )
    }

    /// Stores the event for the table; past `--max-events`, a packet the
    /// table will not show is only counted.
    fn store(
        &mut self,
        event: &Event,
        followed: Followed,
        located: Option<Located>,
    ) -> io::Result<()> {
        let keep_fields = !self.settings.fields.is_empty();
        let snapshot = (keep_fields || located.is_some()).then_some(event);
        let (packet, ended) = (followed.seen.packet, followed.ended.clone());
        if self.follower.store(followed, snapshot, located) {
            return Ok(());
        }
        self.tally.unstored += 1;
        if let Some(f) = ended.filter(|_| !self.follower.holds(packet)) {
            self.count_and_forget(packet, &f);
        }
        Ok(())
    }

    /// Counts the fate of a packet that ended, for the summary, and
    /// forgets the packet; gives the fate in words.
    fn count_and_forget(&mut self, packet: u32, fate: &Fate) -> Told {
        let told = self.tell(fate);
        self.follower.forget(packet);
        *self.ended.entry(told.count_as.clone()).or_default() += 1;
        told
    }

    fn tell(&mut self, fate: &Fate) -> Told {
        fate::tell(fate, &self.targets, &self.reasons, &mut self.sites)
    }

    /// The fates of the packets the table shows, in words, by packet
    /// number; and each fate's count for the summary, over every packet
    /// (json's already forgotten included). One packet at a time: a flood
    /// leaves hundreds of thousands, most of them counted, not stored.
    fn told(&mut self) -> (HashMap<u32, String>, HashMap<String, usize>) {
        let fates = self.follower.take_fates();
        let mut counts = std::mem::take(&mut self.ended);
        let mut texts = HashMap::new();
        for (packet, fate) in fates {
            let told = self.tell(&fate);
            *counts.entry(told.count_as).or_default() += 1;
            if self.follower.holds(packet) {
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

    fn print(self, verbose: bool, told: HashMap<u32, String>) -> io::Result<()> {
        let Collector {
            settings,
            targets,
            reasons,
            follower,
            mut sink,
            ..
        } = self;
        if settings.output == Output::Aggregate {
            let (groups, details) = follower.into_groups();
            timing::step(verbose, "events grouped per packet");
            let extras = Extras {
                reasons: Some(&reasons),
                fields: &settings.fields,
                details: Some(&details),
                fates: Some(&told),
            };
            table::aggregate(&mut sink, &groups, &targets, settings.graph, &extras)?;
        }
        sink.finish()
    }
}
