//! A fake GPIO line set for tests: records every level an output is driven to and every PWM
//! setting with its time on the rig clock, and plays inputs from a script (a bouncing sensor, a
//! sensor that never confirms, a read-back that disagrees, or an input that follows an output).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Result, RigError};
use crate::gpio::lines::{GpioDriver, InputLine, Level, OutputLine, PwmOutput};
use crate::timeline::now_ns;

/// One level an output was driven to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The line's number.
    pub pin: u32,
    /// The level driven.
    pub level: Level,
    /// When (rig clock, ns).
    pub t_ns: u64,
}

/// One setting of a PWM output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PwmChange {
    /// The line's number.
    pub pin: u32,
    /// `(period, pulse)` while enabled, `None` once disabled.
    pub setting: Option<(Duration, Duration)>,
    /// When (rig clock, ns).
    pub t_ns: u64,
}

/// What an input reads.
#[derive(Debug, Clone)]
enum Script {
    /// `initial`, then each `(offset from start, level)` in turn.
    Steps {
        start_ns: u64,
        initial: Level,
        steps: Vec<(Duration, Level)>,
    },
    /// The level `output` had `delay` ago.
    Follows { output: u32, delay: Duration },
}

#[derive(Debug, Default)]
struct State {
    claimed: BTreeMap<u32, String>,
    changes: Vec<Change>,
    pwm: Vec<PwmChange>,
    scripts: HashMap<u32, Script>,
}

impl State {
    fn claim(&mut self, pin: u32, label: &str) -> Result<()> {
        if let Some(user) = self.claimed.get(&pin) {
            return Err(RigError::actuator(
                "gpio (fake)",
                &format!("claim GPIO{pin} for {label}"),
                format!("GPIO{pin} is already claimed by {user}"),
            ));
        }
        self.claimed.insert(pin, label.to_string());
        Ok(())
    }

    fn output_level_at(&self, pin: u32, t_ns: u64) -> Level {
        self.changes
            .iter()
            .rev()
            .find(|c| c.pin == pin && c.t_ns <= t_ns)
            .map_or(Level::Low, |c| c.level)
    }

    fn input_level(&self, pin: u32) -> Level {
        let now = now_ns();
        match self.scripts.get(&pin) {
            None => Level::Low,
            Some(Script::Steps {
                start_ns,
                initial,
                steps,
            }) => {
                let elapsed = Duration::from_nanos(now.saturating_sub(*start_ns));
                steps
                    .iter()
                    .take_while(|(at, _)| *at <= elapsed)
                    .last()
                    .map_or(*initial, |(_, level)| *level)
            }
            Some(Script::Follows { output, delay }) => {
                self.output_level_at(*output, now.saturating_sub(delay.as_nanos() as u64))
            }
        }
    }
}

/// A fake GPIO driver. Clones share the same lines, so a test keeps one clone to script inputs
/// and read the record while the capability under test owns another.
#[derive(Debug, Clone, Default)]
pub struct FakeGpio {
    state: Arc<Mutex<State>>,
}

impl FakeGpio {
    /// A line set with nothing claimed; unscripted inputs read low.
    pub fn new() -> FakeGpio {
        FakeGpio::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake gpio lock")
    }

    /// Input `pin` reads `level` from now on.
    pub fn set_input(&self, pin: u32, level: Level) {
        self.script_input(pin, level, &[]);
    }

    /// Input `pin` reads `initial`, then each `(offset from now, level)` in turn: a bouncing
    /// sensor is a few short steps before the final one.
    pub fn script_input(&self, pin: u32, initial: Level, steps: &[(Duration, Level)]) {
        let script = Script::Steps {
            start_ns: now_ns(),
            initial,
            steps: steps.to_vec(),
        };
        self.lock().scripts.insert(pin, script);
    }

    /// Input `pin` reads the level output `output` had `delay` earlier (a relay's read-back, a
    /// sensor seeing what a mechanism did).
    pub fn follow(&self, pin: u32, output: u32, delay: Duration) {
        self.lock().scripts.insert(pin, Script::Follows { output, delay });
    }

    /// Every level output `pin` was driven to, the initial one first.
    pub fn changes(&self, pin: u32) -> Vec<Change> {
        self.lock()
            .changes
            .iter()
            .filter(|c| c.pin == pin)
            .copied()
            .collect()
    }

    /// The level output `pin` is driving now, if it was ever driven.
    pub fn level(&self, pin: u32) -> Option<Level> {
        self.changes(pin).last().map(|c| c.level)
    }

    /// The widths of the completed pulses at `level` on output `pin`, in order.
    pub fn pulse_widths(&self, pin: u32, level: Level) -> Vec<Duration> {
        let changes = self.changes(pin);
        let mut widths = Vec::new();
        let mut started = None;
        for change in changes {
            match (change.level == level, started) {
                (true, None) => started = Some(change.t_ns),
                (false, Some(t0)) => {
                    widths.push(Duration::from_nanos(change.t_ns - t0));
                    started = None;
                }
                _ => {}
            }
        }
        widths
    }

    /// Every setting of PWM output `pin`.
    pub fn pwm_changes(&self, pin: u32) -> Vec<PwmChange> {
        self.lock().pwm.iter().filter(|c| c.pin == pin).copied().collect()
    }

    /// The lines claimed now, with their labels.
    pub fn claimed(&self) -> Vec<(u32, String)> {
        self.lock().claimed.iter().map(|(p, l)| (*p, l.clone())).collect()
    }
}

impl GpioDriver for FakeGpio {
    fn name(&self) -> String {
        "fake".to_string()
    }

    fn output(&self, pin: u32, label: &str, initial: Level) -> Result<Box<dyn OutputLine>> {
        let mut state = self.lock();
        state.claim(pin, label)?;
        state.changes.push(Change {
            pin,
            level: initial,
            t_ns: now_ns(),
        });
        Ok(Box::new(FakeLine {
            gpio: self.clone(),
            pin,
        }))
    }

    fn input(&self, pin: u32, label: &str) -> Result<Box<dyn InputLine>> {
        self.lock().claim(pin, label)?;
        Ok(Box::new(FakeLine {
            gpio: self.clone(),
            pin,
        }))
    }

    fn pwm(&self, pin: u32, label: &str) -> Result<Box<dyn PwmOutput>> {
        self.lock().claim(pin, label)?;
        Ok(Box::new(FakeLine {
            gpio: self.clone(),
            pin,
        }))
    }
}

/// A claimed fake line; releases its claim when dropped.
struct FakeLine {
    gpio: FakeGpio,
    pin: u32,
}

impl OutputLine for FakeLine {
    fn write(&mut self, level: Level) -> Result<()> {
        self.gpio.lock().changes.push(Change {
            pin: self.pin,
            level,
            t_ns: now_ns(),
        });
        Ok(())
    }
}

impl InputLine for FakeLine {
    fn read(&self) -> Result<Level> {
        Ok(self.gpio.lock().input_level(self.pin))
    }
}

impl PwmOutput for FakeLine {
    fn set(&mut self, period: Duration, pulse: Duration) -> Result<()> {
        self.record_pwm(Some((period, pulse)));
        Ok(())
    }

    fn disable(&mut self) -> Result<()> {
        self.record_pwm(None);
        Ok(())
    }
}

impl FakeLine {
    fn record_pwm(&self, setting: Option<(Duration, Duration)>) {
        self.gpio.lock().pwm.push(PwmChange {
            pin: self.pin,
            setting,
            t_ns: now_ns(),
        });
    }
}

impl Drop for FakeLine {
    fn drop(&mut self) {
        self.gpio.lock().claimed.remove(&self.pin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_line_cannot_be_claimed_again_until_dropped() {
        let gpio = FakeGpio::new();
        let line = gpio.output(17, "relay", Level::Low).unwrap();
        let err = gpio.input(17, "sensor").err().unwrap().to_string();
        assert!(err.contains("GPIO17 is already claimed by relay"), "{err}");
        drop(line);
        assert!(gpio.input(17, "sensor").is_ok());
    }

    #[test]
    fn scripted_input_steps_through_its_levels() {
        let gpio = FakeGpio::new();
        gpio.script_input(5, Level::Low, &[(Duration::from_millis(20), Level::High)]);
        let input = gpio.input(5, "sensor").unwrap();
        assert_eq!(input.read().unwrap(), Level::Low);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(input.read().unwrap(), Level::High);
    }
}
