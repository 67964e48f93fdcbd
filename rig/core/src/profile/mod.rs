//! Terminal profiles: how to drive a terminal model from its console and how to turn its log lines
//! into canonical events (`fixtures/terminals/*.toml`, vocabulary in `fixtures/terminals/README.md`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

mod matcher;

use regex::Regex;
use serde::Deserialize;

use matcher::EventMatcher;

/// Canonical events that end a sale attempt on the terminal: its outcome, or the end of the
/// reversal it caused.
pub const SALE_ENDINGS: [&str; 6] = [
    "approved",
    "declined",
    "terminated",
    "refused",
    "reversal_done",
    "reversal_failed",
];

/// A canonical terminal event parsed from a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The canonical name, e.g. `approved`.
    pub name: String,
    /// The named groups of the pattern that took part in the match, e.g. `stan`.
    pub fields: Fields,
}

impl Event {
    /// The value of field `name`, or "" when the pattern has no such group.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).unwrap_or("")
    }
}

/// An event's named values, in the order its pattern names them. The names are shared with the
/// profile and the values kept in one string, so a line's event costs two allocations however
/// many fields it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// Each field's name and where its value lies in `values`.
    spans: Vec<(Arc<str>, Range<usize>)>,
    values: String,
}

impl Fields {
    /// The value of field `name`, if the event has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }

    /// Each field's name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .iter()
            .map(|(name, span)| (&**name, &self.values[span.clone()]))
    }

    /// How many fields the event has.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the event has no fields.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Adds a field (the matcher fills an event's fields in its pattern's order).
    pub(crate) fn push(&mut self, name: Arc<str>, value: &str) {
        let start = self.values.len();
        self.values.push_str(value);
        self.spans.push((name, start..self.values.len()));
    }

    /// Room for `fields` fields whose values take `bytes` bytes.
    pub(crate) fn with_capacity(fields: usize, bytes: usize) -> Fields {
        Fields {
            spans: Vec::with_capacity(fields),
            values: String::with_capacity(bytes),
        }
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Arc<str>>, V: AsRef<str>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(fields: I) -> Fields {
        let mut collected = Fields::default();
        for (name, value) in fields {
            collected.push(name.into(), value.as_ref());
        }
        collected
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// The text of `line` over `range`. A byte-wise pattern may, rarely, split a character: then the
/// value is made valid with U+FFFD.
fn value(line: &str, range: Range<usize>) -> Cow<'_, str> {
    match line.get(range.clone()) {
        Some(text) => Cow::Borrowed(text),
        None => String::from_utf8_lossy(&line.as_bytes()[range]),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    console: ConsoleSettings,
    commands: BTreeMap<String, String>,
    events: Vec<RawPattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    event: String,
    pattern: String,
}

/// How the console line is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Baud rate of the UART.
    pub baud: u32,
    /// What ends a command line.
    pub line_ending: String,
}

/// A terminal profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The model's name.
    pub name: String,
    /// What it is, in words.
    pub description: String,
    /// Console settings.
    pub console: ConsoleSettings,
    commands: BTreeMap<String, String>,
    /// Each event's name, by pattern index.
    events: Vec<String>,
    /// Every event pattern, compiled for the read path.
    matcher: EventMatcher,
}

impl Profile {
    /// Reads a profile; errors name the file and, where known, the line or the event.
    pub fn load(path: &Path) -> Result<Profile, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let raw: RawProfile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            format!("{}:{line}: {}", path.display(), e.message())
        })?;
        let patterns: Vec<&str> = raw.events.iter().map(|p| p.pattern.as_str()).collect();
        let matcher = EventMatcher::new(&patterns).map_err(|(index, e)| match raw.events.get(index) {
            Some(p) => format!(
                "{}: pattern of event {:?} is not a valid regex: {e}",
                path.display(),
                p.event
            ),
            None => format!("{}: the event patterns do not combine: {e}", path.display()),
        })?;
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            console: raw.console,
            commands: raw.commands,
            events: raw.events.into_iter().map(|p| p.event).collect(),
            matcher,
        })
    }

    /// The canonical event of a console line: the pattern that matches earliest in the line wins,
    /// and of two matching at the same place, the one written first.
    pub fn parse(&self, line: &str) -> Option<Event> {
        let (index, fields) = self.matcher.matches(line)?;
        Some(Event {
            name: self.events[index].clone(),
            fields,
        })
    }

    /// The console line for command `name` with `{placeholders}` filled from `values`.
    pub fn command(&self, name: &str, values: &[(&str, String)]) -> Result<String, String> {
        let template = self
            .commands
            .get(name)
            .ok_or_else(|| format!("terminal profile {:?} has no {name:?} command", self.name))?;
        let mut line = template.clone();
        for (key, value) in values {
            line = line.replace(&format!("{{{key}}}"), value);
        }
        if let Some(unfilled) = Regex::new(r"\{[a-z_]+\}").ok().and_then(|r| r.find(&line)) {
            return Err(format!(
                "command {name:?} needs a value for {}",
                unfilled.as_str()
            ));
        }
        line.push_str(&self.console.line_ending);
        Ok(line)
    }
}
