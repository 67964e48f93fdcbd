//! A card feeder driven by a hobby servo on a hardware PWM output: one calibrated angle holds the
//! card in the reader, another holds it out; an optional card-present sensor confirms each move.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::capability::CardFeeder;
use crate::error::{Result, RigError};
use crate::gpio::feeder::{check_card, CardSensor, CardSensorConfig};
use crate::gpio::lines::{GpioDriver, PwmOutput};

const CAPABILITY: &str = "card feeder (servo)";

/// The servo's full travel: `min_pulse_us` is 0°, `max_pulse_us` is this angle.
pub const SERVO_RANGE_DEG: f64 = 180.0;

fn default_min_pulse_us() -> u64 {
    500
}

fn default_max_pulse_us() -> u64 {
    2500
}

fn default_period_ms() -> u64 {
    20
}

/// A servo card feeder. It holds one physical card, named by `card`: inserting any other name is
/// an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServoFeederConfig {
    /// The card loaded in the mechanism (a card profile name).
    pub card: String,
    /// The hardware PWM output driving the servo (GPIO 12, 13, 18 or 19 on a Pi).
    pub pin: u32,
    /// The calibrated angle (0 to 180) at which the card is fully in the reader.
    pub inserted_angle_deg: f64,
    /// The calibrated angle (0 to 180) at which the card is out of the reader.
    pub removed_angle_deg: f64,
    /// How long the servo takes to travel between the two angles.
    pub travel_ms: u64,
    /// Pulse width at 0° (500 by default).
    #[serde(default = "default_min_pulse_us")]
    pub min_pulse_us: u64,
    /// Pulse width at 180° (2500 by default).
    #[serde(default = "default_max_pulse_us")]
    pub max_pulse_us: u64,
    /// PWM period (20 ms, 50 Hz, by default).
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// The card-present sensor, if the mechanism has one; without it a move counts as done once
    /// `travel_ms` has passed.
    #[serde(default)]
    pub sensor: Option<CardSensorConfig>,
    /// How many more times a move is tried when the sensor does not confirm it.
    #[serde(default)]
    pub retries: u32,
}

impl ServoFeederConfig {
    /// The pins it uses, each with what uses it.
    pub fn pins(&self) -> Vec<(String, u32)> {
        let mut pins = vec![("the card feeder's servo".to_string(), self.pin)];
        if let Some(sensor) = &self.sensor {
            pins.push(("the card feeder's sensor".to_string(), sensor.pin));
        }
        pins
    }

    /// A sentence naming the field that is wrong, if any.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (field, angle) in [
            ("inserted_angle_deg", self.inserted_angle_deg),
            ("removed_angle_deg", self.removed_angle_deg),
        ] {
            if !(0.0..=SERVO_RANGE_DEG).contains(&angle) {
                return Err(format!(
                    "{field} is {angle}; it must be between 0 and {SERVO_RANGE_DEG}"
                ));
            }
        }
        if self.min_pulse_us >= self.max_pulse_us {
            return Err(format!(
                "min_pulse_us ({}) must be shorter than max_pulse_us ({})",
                self.min_pulse_us, self.max_pulse_us
            ));
        }
        if self.max_pulse_us >= self.period_ms * 1000 {
            return Err(format!(
                "max_pulse_us ({}) must be shorter than period_ms ({} ms)",
                self.max_pulse_us, self.period_ms
            ));
        }
        if self.card.trim().is_empty() {
            return Err("card must name the card loaded in the mechanism".into());
        }
        self.sensor.as_ref().map_or(Ok(()), CardSensorConfig::validate)
    }

    /// The pulse width that sets the servo to `angle_deg`: linear from `min_pulse_us` at 0° to
    /// `max_pulse_us` at 180°.
    pub fn pulse_for(&self, angle_deg: f64) -> Duration {
        let span = (self.max_pulse_us - self.min_pulse_us) as f64;
        let us = self.min_pulse_us as f64 + span * angle_deg / SERVO_RANGE_DEG;
        Duration::from_nanos((us * 1000.0).round() as u64)
    }
}

/// A [`CardFeeder`] on a servo. Opening it moves the servo to the removed angle (card out, the
/// rig's safe state).
pub struct ServoFeeder {
    config: ServoFeederConfig,
    pwm: Mutex<Box<dyn PwmOutput>>,
    sensor: Option<CardSensor>,
    inserted: Mutex<bool>,
}

impl ServoFeeder {
    /// Checks `config`, claims the PWM output (and the sensor) and moves to the removed angle.
    pub fn new(driver: &dyn GpioDriver, config: &ServoFeederConfig) -> Result<ServoFeeder> {
        config
            .validate()
            .map_err(|problem| RigError::actuator(CAPABILITY, "configure", problem))?;
        let sensor = match &config.sensor {
            Some(sensor) => Some(CardSensor::open(driver, sensor, "card-present sensor")?),
            None => None,
        };
        let feeder = ServoFeeder {
            config: config.clone(),
            pwm: Mutex::new(driver.pwm(config.pin, "card servo")?),
            sensor,
            inserted: Mutex::new(false),
        };
        feeder.move_to(false)?;
        Ok(feeder)
    }

    /// Sets the servo to the inserted (`true`) or removed angle, without waiting.
    fn move_to(&self, inserted: bool) -> Result<()> {
        let angle = if inserted {
            self.config.inserted_angle_deg
        } else {
            self.config.removed_angle_deg
        };
        let period = Duration::from_millis(self.config.period_ms);
        self.pwm
            .lock()
            .expect("servo lock")
            .set(period, self.config.pulse_for(angle))?;
        *self.inserted.lock().expect("servo state lock") = inserted;
        Ok(())
    }

    /// Moves to the inserted (`true`) or removed angle and waits for the travel; on a retry,
    /// first swings back to the other angle.
    fn travel(&self, inserted: bool, attempt: u32) -> Result<()> {
        let travel = Duration::from_millis(self.config.travel_ms);
        if attempt > 1 {
            self.move_to(!inserted)?;
            std::thread::sleep(travel);
        }
        self.move_to(inserted)?;
        std::thread::sleep(travel);
        Ok(())
    }

    /// Moves and confirms with the sensor when there is one.
    fn go(&self, inserted: bool, action: &str) -> Result<()> {
        let Some(sensor) = &self.sensor else {
            return self.travel(inserted, 1);
        };
        let angle = if inserted {
            self.config.inserted_angle_deg
        } else {
            self.config.removed_angle_deg
        };
        let done = format!("moved the servo on GPIO{} to {angle}°", self.config.pin);
        sensor.confirm(inserted, self.config.retries, CAPABILITY, action, &done, |n| {
            self.travel(inserted, n)
        })
    }
}

impl CardFeeder for ServoFeeder {
    fn insert(&self, card: &str) -> Result<()> {
        check_card(CAPABILITY, &self.config.card, card)?;
        let outcome = self.go(true, &format!("insert {card}"));
        if outcome.is_err() {
            // Leave nothing actuated: back to the removed angle.
            self.move_to(false)?;
        }
        outcome
    }

    fn remove(&self) -> Result<()> {
        self.go(false, "remove")
    }

    /// The loaded card while the sensor reads "present", or, without a sensor, while the servo
    /// was last moved to the inserted angle.
    fn present(&self) -> Result<Option<String>> {
        let present = match &self.sensor {
            Some(sensor) => sensor.present()?,
            None => *self.inserted.lock().expect("servo state lock"),
        };
        Ok(present.then(|| self.config.card.clone()))
    }
}
