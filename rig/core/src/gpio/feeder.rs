//! What the solenoid and servo feeders share: the card-present sensor, retrying a move until the
//! sensor confirms it, and the check of the card's name (a mechanism holds one physical card, named
//! by `card` in its configuration).

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, RigError};
use crate::gpio::debounce::{wait_for, Wait};
use crate::gpio::lines::{Active, GpioDriver, Input};

/// A sensor that reads active while a card is in the reader.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSensorConfig {
    /// The input's number (BCM GPIO on a Pi).
    pub pin: u32,
    /// The level that means "card present" (`high` or `low`).
    #[serde(default)]
    pub active: Active,
    /// How long the sensor must read the same before it counts (contact bounce, a card wobbling).
    #[serde(default)]
    pub debounce_ms: u64,
    /// How long to wait, after each move, for the sensor to confirm it.
    pub timeout_ms: u64,
}

impl CardSensorConfig {
    /// A sentence naming the field that is wrong, if any.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.timeout_ms <= self.debounce_ms {
            return Err(format!(
                "sensor.timeout_ms ({}) must be longer than sensor.debounce_ms ({}), or the sensor can never confirm",
                self.timeout_ms, self.debounce_ms
            ));
        }
        Ok(())
    }
}

fn presence(present: bool) -> &'static str {
    if present {
        "present"
    } else {
        "absent"
    }
}

/// An open card-present sensor.
pub(crate) struct CardSensor {
    input: Mutex<Input>,
    debounce: Duration,
    timeout: Duration,
}

impl CardSensor {
    /// Claims the sensor's input.
    pub(crate) fn open(
        driver: &dyn GpioDriver,
        config: &CardSensorConfig,
        label: &str,
    ) -> Result<CardSensor> {
        Ok(CardSensor {
            input: Mutex::new(Input::open(driver, config.pin, label, config.active)?),
            debounce: Duration::from_millis(config.debounce_ms),
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    fn input(&self) -> std::sync::MutexGuard<'_, Input> {
        self.input.lock().expect("card sensor lock")
    }

    /// Whether the sensor reads "present" now.
    pub(crate) fn present(&self) -> Result<bool> {
        self.input().is_active()
    }

    /// Runs `attempt` (the feeder's move, described by `done`, e.g. "pushed the card") up to
    /// `1 + retries` times, until the sensor reads `want_present` for the debounce time within
    /// the timeout after a move. The error names the step, the count, the pin and the reading.
    pub(crate) fn confirm(
        &self,
        want_present: bool,
        retries: u32,
        capability: &str,
        action: &str,
        done: &str,
        mut attempt: impl FnMut(u32) -> Result<()>,
    ) -> Result<()> {
        let mut last = !want_present;
        for n in 1..=retries + 1 {
            attempt(n)?;
            let input = self.input();
            match wait_for(&input, want_present, self.debounce, self.timeout)? {
                Wait::Confirmed => return Ok(()),
                Wait::TimedOut { last_active } => last = last_active,
            }
        }
        let input = self.input();
        let times = if retries == 0 {
            "once".to_string()
        } else {
            format!("{} times", retries + 1)
        };
        Err(RigError::actuator(
            capability,
            action,
            format!(
                "{done} {times}, the card-present sensor on GPIO{} never read '{}' ({}) within {} ms; \
                 it last read '{}' ({})",
                input.pin(),
                presence(want_present),
                input.level_for(want_present),
                self.timeout.as_millis(),
                presence(last),
                input.level_for(last),
            ),
        ))
    }
}

/// Ok when `requested` is the card loaded in the mechanism; otherwise an error saying so.
pub(crate) fn check_card(capability: &str, loaded: &str, requested: &str) -> Result<()> {
    if loaded == requested {
        return Ok(());
    }
    Err(RigError::actuator(
        capability,
        &format!("insert {requested}"),
        format!(
            "this feeder holds the card {loaded:?} and cannot insert {requested:?}; swap the card in \
             the mechanism and set `card` in the rig configuration to its name"
        ),
    ))
}
