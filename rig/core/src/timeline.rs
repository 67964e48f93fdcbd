//! The timeline: every event of a run on one monotonic clock — console lines, canonical terminal
//! events, host wire messages, actuator actions, trigger firings and test markers — exportable as
//! CSV.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RigError};

pub use posrig_host::monotonic_ns as now_ns;

/// Where a timeline entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A raw console line.
    Console,
    /// A canonical terminal event parsed from a console line.
    Terminal,
    /// A message the host received or sent, or a host connection event.
    Host,
    /// Something the rig did: power, card, link, impairment.
    Actuator,
    /// A trigger matched and fired.
    Trigger,
    /// A GPIO input the rig watches changed (a sensor, a line from the terminal).
    Input,
    /// A marker a test placed.
    Marker,
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Rig clock (CLOCK_MONOTONIC) in nanoseconds.
    pub t_ns: u64,
    /// Where it comes from.
    pub source: Source,
    /// What happened: a canonical event name, `0200 in`, `power off`, a marker's name.
    pub name: String,
    /// Details: the console line, the host's note, the action's outcome.
    pub detail: String,
    /// Named values: STAN, response code, event fields.
    pub fields: BTreeMap<String, String>,
}

impl Entry {
    /// An entry with no fields.
    pub fn new(t_ns: u64, source: Source, name: impl Into<String>, detail: impl Into<String>) -> Entry {
        Entry {
            t_ns,
            source,
            name: name.into(),
            detail: detail.into(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a named value.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Entry {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// The run's timeline, shared by every part of the rig. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Appends an entry.
    pub fn push(&self, entry: Entry) {
        self.entries.lock().expect("timeline lock").push(entry);
    }

    /// Places a marker now and returns its time.
    pub fn mark(&self, name: &str, detail: &str) -> u64 {
        let t_ns = now_ns();
        self.push(Entry::new(t_ns, Source::Marker, name, detail));
        t_ns
    }

    /// Number of entries so far: a position to read from later.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("timeline lock").len()
    }

    /// True when nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, ordered by time.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = self.entries.lock().expect("timeline lock").clone();
        entries.sort_by_key(|e| e.t_ns);
        entries
    }

    /// Entries recorded from position `since` on, ordered by time.
    pub fn since(&self, since: usize) -> Vec<Entry> {
        let mut entries = self.entries.lock().expect("timeline lock")[since..].to_vec();
        entries.sort_by_key(|e| e.t_ns);
        entries
    }

    /// Writes the timeline as CSV: `t_ns,t_ms,source,name,detail,fields`, times relative to the
    /// first entry in `t_ms`, fields as `key=value` pairs separated by spaces.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let entries = self.entries();
        let start = entries.first().map_or(0, |e| e.t_ns);
        let mut out = String::from("t_ns,t_ms,source,name,detail,fields\n");
        for e in &entries {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "{},{:.3},{},{},{},{}\n",
                e.t_ns,
                (e.t_ns - start) as f64 / 1e6,
                serde_json::to_value(e.source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                csv_field(&e.name),
                csv_field(&e.detail),
                csv_field(&fields.join(" "))
            ));
        }
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(out.as_bytes()))
            .map_err(|e| RigError::io(format!("writing the timeline {}", path.display()), e))
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_orders_by_time_and_quotes_what_needs_it() {
        let timeline = Timeline::new();
        timeline.push(Entry::new(2_000_000, Source::Console, "line", "a, \"b\""));
        timeline.push(Entry::new(1_000_000, Source::Actuator, "power off", "").with("by", "trigger 1"));
        let path = std::env::temp_dir().join(format!("timeline-{}.csv", std::process::id()));
        timeline.write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "1000000,0.000,actuator,power off,,by=trigger 1");
        assert_eq!(lines[2], "2000000,1.000,console,line,\"a, \"\"b\"\"\",");
    }
}
