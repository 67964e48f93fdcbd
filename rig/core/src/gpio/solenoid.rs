//! A card feeder driven by solenoids: a push solenoid moves the card into the reader, an
//! optional pull solenoid draws it out (without one, the mechanism's return spring does), and a
//! card-present sensor confirms every move.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;

use crate::capability::CardFeeder;
use crate::error::{Result, RigError};
use crate::gpio::feeder::{check_card, CardSensor, CardSensorConfig};
use crate::gpio::lines::{Active, GpioDriver, Output};

const CAPABILITY: &str = "card feeder (solenoid)";

/// A solenoid card feeder. It holds one physical card, named by `card`: inserting any other
/// name is an error, since the rig cannot swap cards by itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolenoidFeederConfig {
    /// The card loaded in the mechanism (a card profile name, e.g. `unionpay-debit`).
    pub card: String,
    /// The output driving the push solenoid.
    pub push_pin: u32,
    /// The level that energises the push solenoid.
    #[serde(default)]
    pub push_active: Active,
    /// How long each push (and each pull) energises its solenoid.
    pub pulse_ms: u64,
    /// For mechanisms that must be held: after the sensor confirms the card, the push solenoid
    /// stays energised this much longer so the card seats in the reader's contacts (0: the push
    /// is released at the end of the pulse, before the sensor is read).
    #[serde(default)]
    pub hold_ms: u64,
    /// The output driving the pull solenoid, if the mechanism has one.
    #[serde(default)]
    pub pull_pin: Option<u32>,
    /// The level that energises the pull solenoid.
    #[serde(default)]
    pub pull_active: Active,
    /// The card-present sensor.
    pub sensor: CardSensorConfig,
    /// How many more times a push or pull is tried when the sensor does not confirm it.
    #[serde(default)]
    pub retries: u32,
}

impl SolenoidFeederConfig {
    /// The pins it uses, each with what uses it.
    pub fn pins(&self) -> Vec<(String, u32)> {
        let mut pins = vec![
            ("the card feeder's push solenoid".to_string(), self.push_pin),
            ("the card feeder's sensor".to_string(), self.sensor.pin),
        ];
        if let Some(pull) = self.pull_pin {
            pins.push(("the card feeder's pull solenoid".to_string(), pull));
        }
        pins
    }

    /// A sentence naming the field that is wrong, if any.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.pulse_ms == 0 {
            return Err("pulse_ms must be more than 0: a 0 ms pulse never moves the solenoid".into());
        }
        if self.card.trim().is_empty() {
            return Err("card must name the card loaded in the mechanism".into());
        }
        self.sensor.validate()
    }
}

/// A [`CardFeeder`] on solenoids. Both solenoids are released when it is opened and after every
/// call, including failed ones.
pub struct SolenoidFeeder {
    card: String,
    push: Mutex<Output>,
    pull: Option<Mutex<Output>>,
    sensor: CardSensor,
    pulse: Duration,
    hold: Duration,
    retries: u32,
}

impl SolenoidFeeder {
    /// Checks `config` and claims its lines, solenoids released.
    pub fn new(driver: &dyn GpioDriver, config: &SolenoidFeederConfig) -> Result<SolenoidFeeder> {
        config
            .validate()
            .map_err(|problem| RigError::actuator(CAPABILITY, "configure", problem))?;
        let sensor = CardSensor::open(driver, &config.sensor, "card-present sensor")?;
        let push = Output::open(
            driver,
            config.push_pin,
            "push solenoid",
            config.push_active,
            false,
        )?;
        let pull = match config.pull_pin {
            Some(pin) => Some(Mutex::new(Output::open(
                driver,
                pin,
                "pull solenoid",
                config.pull_active,
                false,
            )?)),
            None => None,
        };
        Ok(SolenoidFeeder {
            card: config.card.clone(),
            push: Mutex::new(push),
            pull,
            sensor,
            pulse: Duration::from_millis(config.pulse_ms),
            hold: Duration::from_millis(config.hold_ms),
            retries: config.retries,
        })
    }

    fn push(&self) -> MutexGuard<'_, Output> {
        self.push.lock().expect("push solenoid lock")
    }

    /// Energises `solenoid` for the pulse, releasing it at the end unless `keep` is set.
    fn pulse(&self, solenoid: &mut Output, keep: bool) -> Result<()> {
        if solenoid.is_active() {
            // Still held from a previous attempt: retract before pushing again.
            solenoid.set_active(false)?;
            std::thread::sleep(self.pulse);
        }
        solenoid.set_active(true)?;
        std::thread::sleep(self.pulse);
        if !keep {
            solenoid.set_active(false)?;
        }
        Ok(())
    }
}

impl CardFeeder for SolenoidFeeder {
    fn insert(&self, card: &str) -> Result<()> {
        check_card(CAPABILITY, &self.card, card)?;
        let action = format!("insert {card}");
        let hold = !self.hold.is_zero();
        let pushed = self
            .sensor
            .confirm(true, self.retries, CAPABILITY, &action, "pushed the card", |_| {
                self.pulse(&mut self.push(), hold)
            });
        if pushed.is_ok() && hold {
            std::thread::sleep(self.hold);
        }
        let released = self.push().set_active(false);
        pushed.and(released)
    }

    fn remove(&self) -> Result<()> {
        let outcome = match &self.pull {
            Some(pull) => self.sensor.confirm(
                false,
                self.retries,
                CAPABILITY,
                "remove",
                "pulled the card",
                |_| self.pulse(&mut pull.lock().expect("pull solenoid lock"), false),
            ),
            None => self.sensor.confirm(
                false,
                self.retries,
                CAPABILITY,
                "remove",
                "released the push solenoid",
                |_| self.push().set_active(false),
            ),
        };
        let released = self.push().set_active(false);
        outcome.and(released)
    }

    /// The loaded card while the sensor reads "present".
    fn present(&self) -> Result<Option<String>> {
        Ok(self.sensor.present()?.then(|| self.card.clone()))
    }
}
