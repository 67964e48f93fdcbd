//! Every console line of a run, kept so tests and tools can wait for an event or read back
//! what the terminal said.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::capability::ConsoleLine;
use crate::profile::Event;

/// The lines read so far, with a way to wait for the next. Cheap to clone.
#[derive(Clone, Default)]
pub struct ConsoleLog {
    lines: Arc<(Mutex<Vec<ConsoleLine>>, Condvar)>,
}

impl ConsoleLog {
    /// An empty log.
    pub fn new() -> ConsoleLog {
        ConsoleLog::default()
    }

    /// Appends a line and wakes whoever waits.
    pub fn push(&self, line: &ConsoleLine) {
        let (lock, ready) = &*self.lines;
        lock.lock().expect("console log lock").push(line.clone());
        ready.notify_all();
    }

    /// Number of lines so far: a mark to wait from.
    pub fn mark(&self) -> usize {
        self.lines.0.lock().expect("console log lock").len()
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<ConsoleLine> {
        self.lines.0.lock().expect("console log lock").clone()
    }

    /// Canonical events from line `since` on.
    pub fn events_since(&self, since: usize) -> Vec<Event> {
        let lines = self.lines.0.lock().expect("console log lock");
        lines
            .get(since..)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.event.clone())
            .collect()
    }

    /// Waits for the first line at or after `since` whose event satisfies `wanted`; returns its
    /// index and the line.
    pub fn wait_for(
        &self,
        since: usize,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<(usize, ConsoleLine), String> {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.lines;
        let mut lines = lock.lock().expect("console log lock");
        let mut next = since;
        loop {
            while next < lines.len() {
                if lines[next].event.as_ref().is_some_and(&wanted) {
                    return Ok((next, lines[next].clone()));
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no such console event within {timeout:?}"));
            }
            lines = ready.wait_timeout(lines, left).expect("console log lock").0;
        }
    }

    /// Waits from `since` for the first event named in `names`.
    pub fn wait_event(&self, since: usize, timeout: Duration, names: &[&str]) -> Result<Event, String> {
        self.wait_for(since, timeout, |e| names.contains(&e.name.as_str()))
            .map(|(_, line)| line.event.expect("matched lines have events"))
            .map_err(|e| format!("waiting for {names:?}: {e}"))
    }
}
