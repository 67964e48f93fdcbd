//! posrig as the rig runs it: a SerialConsole on the slave with the terminal profile, whose sink
//! hands every line to the trigger engine in the read path; a `console regex → power off` trigger
//! on a SimPower whose terminal is a dummy process.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use posrig_core::actuators::{Action, Actuators, Capabilities};
use posrig_core::capability::{ConsoleLine, LineSink, PowerSwitch};
use posrig_core::profile::Profile;
use posrig_core::serial::{SerialConsole, SerialSettings};
use posrig_core::sim::power::{SimPower, TerminalCommand};
use posrig_core::timeline::Timeline;
use posrig_core::trigger::{Trigger, TriggerEngine, When};
use regex::Regex;

use crate::ingest::{Meter, Reading};
use crate::latency::{Contender, Stamps, FIRING_TIMEOUT};
use crate::stream::TRIGGER_PATTERN;

/// `when console ~ TRIGGER_PATTERN do power off`, once.
fn power_off_on_trigger_line() -> Result<Trigger, String> {
    Ok(Trigger {
        when: When::Console(Regex::new(TRIGGER_PATTERN).map_err(|e| e.to_string())?),
        after: Duration::ZERO,
        action: Action::PowerOff,
        hold: None,
        every_time: false,
    })
}

/// A trigger engine over `capabilities`.
fn engine(capabilities: Capabilities) -> Arc<TriggerEngine> {
    let timeline = Timeline::new();
    Arc::new(TriggerEngine::new(
        Arc::new(Actuators::new(capabilities, timeline.clone())),
        timeline,
    ))
}

/// Opens the console at `path` with a fresh copy of `profile`, lines going to `sink`. A regex
/// keeps its scratch space in a pool whose fast path belongs to the first thread that uses it; the
/// rig loads its profile for its one console, so each console here gets a copy no other thread
/// has used.
fn console(path: &str, profile: &Profile, sink: Arc<dyn LineSink>) -> Result<SerialConsole, String> {
    let settings = SerialSettings {
        baud: profile.console.baud,
        ..SerialSettings::new(path)
    };
    SerialConsole::open(&settings, Arc::new(profile.clone()), sink)
        .map_err(|e| format!("posrig cannot open {path}: {e}"))
}

/// posrig as a latency contender.
pub struct Posrig {
    engine: Arc<TriggerEngine>,
    power: Arc<SimPower>,
    trigger: Trigger,
    _console: SerialConsole,
}

impl Posrig {
    /// Opens the slave at `path` with `profile`.
    pub fn open(path: &str, profile: &Profile) -> Result<Posrig, String> {
        let power = Arc::new(SimPower::new(TerminalCommand {
            program: "sleep".into(),
            args: vec!["1000".into()],
            namespace: None,
            stderr: "/dev/null".into(),
        }));
        let engine = engine(Capabilities {
            power: Some(power.clone()),
            ..Capabilities::default()
        });
        Ok(Posrig {
            // The engine reads the console itself, exactly as in the rig.
            _console: console(path, profile, engine.clone())?,
            engine,
            power,
            trigger: power_off_on_trigger_line()?,
        })
    }
}

impl Contender for Posrig {
    fn arm(&mut self) -> Result<(), String> {
        self.power.on().map_err(|e| e.to_string())?;
        self.engine.arm(self.trigger.clone());
        Ok(())
    }

    fn fired(&mut self, index: usize) -> Result<Stamps, String> {
        let firings = self.engine.wait_firings(index + 1, FIRING_TIMEOUT);
        let firing = firings
            .get(index)
            .filter(|f| f.done_ns > 0)
            .ok_or_else(|| format!("posrig did not act on trigger {index} within {FIRING_TIMEOUT:?}"))?;
        match &firing.error {
            Some(error) => Err(format!("posrig's power off failed: {error}")),
            // The event time is the console line's: when the read that completed it returned.
            None => Ok(Stamps {
                steps: Some((firing.event_ns, firing.started_ns)),
                done_ns: firing.done_ns,
            }),
        }
    }
}

/// posrig as an ingest reader: the same console and engine, the trigger armed (the stream never
/// fires it), every line also counted. Dropping the console stops the reader.
pub fn ingest(path: &str, profile: &Profile) -> Result<(SerialConsole, Receiver<Reading>), String> {
    let engine = engine(Capabilities::default());
    engine.arm(power_off_on_trigger_line()?);
    let (meter, reading) = Meter::new(true);
    let sink = MeteredEngine { engine, meter };
    Ok((console(path, profile, Arc::new(sink))?, reading))
}

/// The engine as the rig runs it, with every line also counted.
struct MeteredEngine {
    engine: Arc<TriggerEngine>,
    meter: Meter,
}

impl LineSink for MeteredEngine {
    fn raw(&self, text: &str, t_ns: u64) {
        self.engine.on_console_text(text, t_ns);
    }

    fn line(&self, line: &ConsoleLine) {
        self.engine.on_console_line(line);
        self.meter.line(line.text.as_bytes(), line.event.is_some());
    }
}
