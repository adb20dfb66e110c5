//! What a guest reports, as JSON lines on its second serial port (written
//! by tests/vm/cases.sh and init): one object per line, each naming its
//! case and event, the streams' text escaped by jq.
//!
//! ```text
//! {"event":"note","text":"boot 6.12.43+deb12-cloud-amd64 1.52"}
//! {"case":"loopback-kprobe-json","event":"begin"}
//! {"case":"loopback-kprobe-json","event":"stage","stage":"ipft started, …"}
//! {"case":"loopback-kprobe-json","event":"result","ready_ms":1500,"stop_ms":20,"exit":0}
//! {"case":"loopback-kprobe-json","event":"stream","name":"stdout","text":"…"}
//! {"case":"loopback-kprobe-json","event":"end"}
//! {"event":"done"}
//! ```
use std::collections::BTreeMap;

use serde_json::Value;

/// What the guest reported for one case.
#[derive(Debug, Default, Clone)]
pub struct CaseOutput {
    pub stdout: String,
    pub stderr: String,
    /// Output of the setup, traffic and teardown steps, and runner notes.
    pub log: String,
    /// `-w` cases: tshark's line per frame of ipft's pcapng.
    pub frames: String,
    /// Milliseconds from start to `Trace ready!`; None if never ready.
    pub ready_ms: Option<u64>,
    /// Milliseconds from SIGINT to exit.
    pub stop_ms: u64,
    /// Milliseconds a test binary ran (`run_tests`).
    pub took_ms: u64,
    pub exit: Option<i32>,
    /// The case's `end` event arrived (else the guest died or timed out).
    pub complete: bool,
    /// The last step the guest announced (to explain a case cut short).
    pub stage: String,
}

/// What a line of the transcript was, for whoever watches it arrive.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A case began (its id).
    Begin(String),
    /// The guest ran everything.
    Done,
    Other,
}

/// Every case of one boot, read line by line.
#[derive(Debug, Default)]
pub struct Transcript {
    pub cases: BTreeMap<String, CaseOutput>,
    /// Messages outside any case (module loading, …), and any line that is
    /// not a JSON event (shown, never dropped).
    pub notes: Vec<String>,
    pub done: bool,
}

impl Transcript {
    /// Reads a whole saved transcript (results.jsonl).
    pub fn read(text: &str) -> Transcript {
        let mut t = Transcript::default();
        text.lines().for_each(|l| {
            t.line(l);
        });
        t
    }

    pub fn line(&mut self, line: &str) -> Seen {
        let line = line.trim_end_matches('\r');
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                self.notes.push(line.to_string());
            }
            return Seen::Other;
        };
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
        let kind = text("event");
        let Some(id) = event.get("case").and_then(Value::as_str) else {
            match kind {
                "done" => self.done = true,
                _ => self.notes.push(text("text").to_string()),
            }
            return if self.done { Seen::Done } else { Seen::Other };
        };
        let case = self.cases.entry(id.to_string()).or_default();
        match kind {
            "begin" => {
                *case = CaseOutput::default();
                return Seen::Begin(id.to_string());
            }
            "stage" => case.stage = text("stage").to_string(),
            "result" => result_fields(case, &event),
            "stream" => {
                let stream = match text("name") {
                    "stdout" => &mut case.stdout,
                    "stderr" => &mut case.stderr,
                    "frames" => &mut case.frames,
                    _ => &mut case.log,
                };
                stream.push_str(text("text"));
            }
            "end" => case.complete = true,
            _ => self.notes.push(line.to_string()),
        }
        Seen::Other
    }
}

fn result_fields(case: &mut CaseOutput, event: &serde_json::Map<String, Value>) {
    let number = |key: &str| event.get(key).and_then(Value::as_i64);
    // -1: never ready.
    case.ready_ms = number("ready_ms").filter(|&n| n >= 0).map(|n| n as u64);
    case.stop_ms = number("stop_ms").unwrap_or(0).max(0) as u64;
    case.took_ms = number("took_ms").unwrap_or(0).max(0) as u64;
    case.exit = number("exit").and_then(|n| i32::try_from(n).ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_lines_cases() {
        let mut t = Transcript::default();
        let mut seen = Vec::new();
        for l in [
            r#"{"event":"note","text":"boot 6.12 1.0"}"#,
            r#"{"case":"a","event":"begin"}"#,
            r#"{"case":"a","event":"result","ready_ms":1500,"stop_ms":20,"exit":0}"#,
            r#"{"case":"a","event":"stream","name":"stdout","text":"row \"x\"\n"}"#,
            r#"{"case":"a","event":"stream","name":"stderr","text":"Trace ready!\n"}"#,
            r#"{"case":"a","event":"stream","name":"log","text":""}"#,
            r#"{"case":"a","event":"end"}"#,
            r#"{"case":"b","event":"begin"}"#,
            r#"{"case":"b","event":"stage","stage":"SIGINT sent, waiting"}"#,
            "kernel noise, not JSON",
            r#"{"event":"done"}"#,
        ] {
            seen.push(t.line(l));
        }
        assert_eq!(seen[1], Seen::Begin("a".into()));
        assert_eq!(seen.last(), Some(&Seen::Done));
        assert!(t.done);
        let a = &t.cases["a"];
        assert_eq!(
            (a.ready_ms, a.stop_ms, a.exit, a.complete),
            (Some(1500), 20, Some(0), true)
        );
        assert_eq!(
            (a.stdout.as_str(), a.stderr.as_str()),
            ("row \"x\"\n", "Trace ready!\n")
        );
        assert!(!t.cases["b"].complete);
        assert_eq!(t.cases["b"].stage, "SIGINT sent, waiting");
        assert_eq!(t.notes, ["boot 6.12 1.0", "kernel noise, not JSON"]);
    }

    #[test]
    fn a_case_never_ready_has_no_ready_time() {
        let t = Transcript::read(concat!(
            r#"{"case":"a","event":"begin"}"#,
            "\n",
            r#"{"case":"a","event":"result","ready_ms":-1,"stop_ms":3,"exit":1}"#,
        ));
        assert_eq!((t.cases["a"].ready_ms, t.cases["a"].exit), (None, Some(1)));
        assert!(!t.done);
    }
}
