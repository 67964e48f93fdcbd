//! The rig's actuators: the capabilities a rig was built with, each action recorded on the
//! timeline with the time it started and the time it completed, and the safe state.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capability::{CardFeeder, Console, Impairment, Link, NetworkImpairment, PowerState, PowerSwitch};
use crate::error::{Result, RigError};
use crate::timeline::{now_ns, Entry, Source, Timeline};

/// Something the rig does to the terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Cut the power.
    PowerOff,
    /// Restore the power.
    PowerOn,
    /// Insert the named card.
    CardInsert {
        /// Card profile name.
        card: String,
    },
    /// Pull the card out.
    CardRemove,
    /// Take the link down.
    LinkDown,
    /// Bring the link up.
    LinkUp,
    /// Degrade the path to the host.
    Impair {
        /// The impairment.
        impairment: Impairment,
    },
    /// Remove every impairment.
    ClearImpairment,
    /// Reset every open connection between terminal and host.
    ResetConnections,
}

impl Action {
    /// A short name for the timeline, e.g. `power off`.
    pub fn name(&self) -> String {
        match self {
            Action::PowerOff => "power off".into(),
            Action::PowerOn => "power on".into(),
            Action::CardInsert { card } => format!("card insert {card}"),
            Action::CardRemove => "card remove".into(),
            Action::LinkDown => "link down".into(),
            Action::LinkUp => "link up".into(),
            Action::Impair { impairment } => format!(
                "impair delay={:?} drop={} blackhole={}",
                impairment.delay, impairment.drop, impairment.blackhole
            ),
            Action::ClearImpairment => "impairment cleared".into(),
            Action::ResetConnections => "connections reset".into(),
        }
    }

    /// The action that undoes this one, for "do X for a while".
    pub fn undo(&self) -> Option<Action> {
        match self {
            Action::PowerOff => Some(Action::PowerOn),
            Action::PowerOn => Some(Action::PowerOff),
            Action::CardInsert { .. } => Some(Action::CardRemove),
            Action::LinkDown => Some(Action::LinkUp),
            Action::LinkUp => Some(Action::LinkDown),
            Action::Impair { .. } => Some(Action::ClearImpairment),
            Action::CardRemove | Action::ClearImpairment | Action::ResetConnections => None,
        }
    }
}

/// When an action started and completed, on the rig's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Just before the capability was called.
    pub started_ns: u64,
    /// When the capability returned.
    pub done_ns: u64,
}

/// The capabilities of a rig; any may be absent.
#[derive(Default)]
pub struct Capabilities {
    /// Power to the terminal.
    pub power: Option<Arc<dyn PowerSwitch>>,
    /// The card feeder.
    pub card: Option<Arc<dyn CardFeeder>>,
    /// The network link.
    pub link: Option<Arc<dyn Link>>,
    /// Network impairments.
    pub impairment: Option<Arc<dyn NetworkImpairment>>,
    /// The terminal's console, whose unfinished line is ended as the power comes back.
    pub console: Option<Arc<dyn Console>>,
}

/// Performs actions and records them.
pub struct Actuators {
    capabilities: Capabilities,
    timeline: Timeline,
}

impl Actuators {
    /// Actuators over `capabilities`, recording on `timeline`.
    pub fn new(capabilities: Capabilities, timeline: Timeline) -> Actuators {
        Actuators {
            capabilities,
            timeline,
        }
    }

    /// The capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Performs `action`; `cause` (e.g. "test", "trigger 3") goes on the timeline with it.
    pub fn perform(&self, action: &Action, cause: &str) -> Result<Done> {
        let started_ns = now_ns();
        let outcome = self.call(action);
        let done_ns = now_ns();
        let mut entry = Entry::new(started_ns, Source::Actuator, action.name(), format!("by {cause}"))
            .with("done_ns", done_ns.to_string())
            .with("took_us", ((done_ns - started_ns) / 1000).to_string());
        if let Err(e) = &outcome {
            entry = entry.with("error", e.to_string());
        }
        self.timeline.push(entry);
        outcome.map(|()| Done { started_ns, done_ns })
    }

    fn call(&self, action: &Action) -> Result<()> {
        let c = &self.capabilities;
        let missing = |what: &str| RigError::Missing(what.to_string());
        match action {
            Action::PowerOff => c.power.as_ref().ok_or_else(|| missing("power switch"))?.off(),
            Action::PowerOn => {
                let power = c.power.as_ref().ok_or_else(|| missing("power switch"))?;
                self.end_console_line_if_off(power.as_ref());
                power.on()
            }
            Action::CardInsert { card } => c
                .card
                .as_ref()
                .ok_or_else(|| missing("card feeder"))?
                .insert(card),
            Action::CardRemove => c.card.as_ref().ok_or_else(|| missing("card feeder"))?.remove(),
            Action::LinkDown => c.link.as_ref().ok_or_else(|| missing("link"))?.down(),
            Action::LinkUp => c.link.as_ref().ok_or_else(|| missing("link"))?.up(),
            Action::Impair { impairment } => c
                .impairment
                .as_ref()
                .ok_or_else(|| missing("network impairment"))?
                .apply(impairment),
            Action::ClearImpairment => c
                .impairment
                .as_ref()
                .ok_or_else(|| missing("network impairment"))?
                .clear(),
            Action::ResetConnections => c
                .impairment
                .as_ref()
                .ok_or_else(|| missing("network impairment"))?
                .reset_connections(),
        }
    }

    /// Before the power comes back on, ends the line the terminal may have left unfinished when it
    /// went off (see [`Console::end_line`]). A console that cannot do so is noted on the timeline;
    /// the power still comes on.
    fn end_console_line_if_off(&self, power: &dyn PowerSwitch) {
        let Some(console) = &self.capabilities.console else {
            return;
        };
        if !matches!(power.state(), Ok(PowerState::Off)) {
            return;
        }
        if let Err(e) = console.end_line() {
            let note = format!("the console's unfinished line could not be ended: {e}");
            self.timeline
                .push(Entry::new(now_ns(), Source::Console, "console", note));
        }
    }

    /// Does `action`, waits `hold`, then undoes it (a power cycle, a link flap).
    pub fn perform_for(&self, action: &Action, hold: Duration, cause: &str) -> Result<Done> {
        let done = self.perform(action, cause)?;
        if let Some(undo) = action.undo() {
            std::thread::sleep(hold);
            self.perform(&undo, cause)?;
        }
        Ok(done)
    }

    /// Brings the terminal to the safe state — link up, impairments off, card out, power on —
    /// trying every step even when one fails, and returns the failures.
    pub fn safe_state(&self, cause: &str) -> Vec<RigError> {
        let c = &self.capabilities;
        let steps = [
            (c.link.is_some(), Action::LinkUp),
            (c.impairment.is_some(), Action::ClearImpairment),
            (c.card.is_some(), Action::CardRemove),
            (c.power.is_some(), Action::PowerOn),
        ];
        steps
            .into_iter()
            .filter(|(present, _)| *present)
            .filter_map(|(_, action)| self.perform(&action, cause).err())
            .collect()
    }
}
