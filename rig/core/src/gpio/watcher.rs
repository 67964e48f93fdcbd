//! Watches inputs (a door switch, a terminal's LED, a printer's paper sensor) and records each
//! debounced edge on the rig's timeline as `input <name>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, RigError};
use crate::gpio::debounce::{Debouncer, Edge, POLL_INTERVAL};
use crate::gpio::lines::{Active, GpioDriver, Input};
use crate::timeline::{now_ns, Entry, Source, Timeline};

/// Which edges of an input are recorded. Edges follow the input's polarity: `rising` is the input
/// becoming active (electrically a falling edge on an active-low input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edges {
    /// The input becoming active.
    Rising,
    /// The input becoming inactive.
    Falling,
    /// Both.
    #[default]
    Both,
}

impl Edges {
    fn wants(self, edge: &Edge) -> bool {
        match self {
            Edges::Rising => edge.active,
            Edges::Falling => !edge.active,
            Edges::Both => true,
        }
    }
}

/// One watched input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedInputConfig {
    /// The name on the timeline: entries are `input <name>`.
    pub name: String,
    /// The input's number.
    pub pin: u32,
    /// The level that means active.
    #[serde(default)]
    pub active: Active,
    /// How long the input must read the same before an edge counts.
    #[serde(default)]
    pub debounce_ms: u64,
    /// Which edges to record.
    #[serde(default)]
    pub edges: Edges,
}

impl WatchedInputConfig {
    /// The pins it uses, each with what uses it.
    pub fn pins(&self) -> Vec<(String, u32)> {
        vec![(format!("input {}", self.name), self.pin)]
    }
}

/// A watched input while the watcher runs.
struct Watched {
    config: WatchedInputConfig,
    input: Input,
    debouncer: Debouncer,
}

impl Watched {
    fn entry_name(&self) -> String {
        format!("input {}", self.config.name)
    }

    /// Reads once; returns the timeline entry for a wanted debounced edge.
    fn poll(&mut self) -> Result<Option<Entry>> {
        let active = self.input.is_active()?;
        let Some(edge) = self.debouncer.feed(active, now_ns()) else {
            return Ok(None);
        };
        if !self.config.edges.wants(&edge) {
            return Ok(None);
        }
        let direction = if edge.active { "rising" } else { "falling" };
        Ok(Some(
            Entry::new(edge.since_ns, Source::Input, self.entry_name(), direction)
                .with("pin", format!("GPIO{}", self.input.pin()))
                .with("level", self.input.level_for(edge.active).to_string())
                .with("confirmed_ns", edge.confirmed_ns.to_string()),
        ))
    }
}

/// Records the debounced edges of its inputs on the timeline (source `actuator`, name
/// `input <name>`, detail `rising` or `falling`, the entry's time being when the input first read
/// its new state) from a thread of its own, until dropped.
pub struct InputWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InputWatcher {
    /// Claims the inputs, takes their current state as the starting point and starts watching.
    pub fn start(
        driver: &dyn GpioDriver,
        inputs: &[WatchedInputConfig],
        timeline: Timeline,
    ) -> Result<InputWatcher> {
        let mut watched = Vec::with_capacity(inputs.len());
        for config in inputs {
            let input = Input::open(
                driver,
                config.pin,
                &format!("input {}", config.name),
                config.active,
            )?;
            let debouncer = Debouncer::new(input.is_active()?, Duration::from_millis(config.debounce_ms));
            watched.push(Watched {
                config: config.clone(),
                input,
                debouncer,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gpio input watcher".into())
            .spawn(move || watch(watched, &stopping, &timeline))
            .map_err(|e| RigError::io("starting the GPIO input watcher", e))?;
        Ok(InputWatcher {
            stop,
            thread: Some(thread),
        })
    }
}

/// Polls every input until told to stop. An input that cannot be read is recorded once on the
/// timeline and no longer watched.
fn watch(mut watched: Vec<Watched>, stop: &AtomicBool, timeline: &Timeline) {
    while !stop.load(Ordering::Relaxed) {
        watched.retain_mut(|w| match w.poll() {
            Ok(entry) => {
                entry.into_iter().for_each(|e| timeline.push(e));
                true
            }
            Err(e) => {
                let detail = format!("read failed, no longer watched: {e}");
                timeline.push(Entry::new(now_ns(), Source::Input, w.entry_name(), detail));
                false
            }
        });
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Drop for InputWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panicked watcher has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
