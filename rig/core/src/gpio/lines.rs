//! GPIO lines: the small traits every backend implements (output, input, PWM, and a driver that
//! opens them by number), and the polarity-aware [`Output`] and [`Input`] the capabilities use.
//! Active-low wiring is handled here and nowhere else.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Result;

/// The electrical level of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Near 0 V.
    Low,
    /// Near the supply voltage (3.3 V on a Raspberry Pi).
    High,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Low => "low",
            Level::High => "high",
        })
    }
}

/// Which level means "active" on a line (`active = "low"` in a configuration for active-low
/// wiring, e.g. a relay module that energises on a low input or a sensor pulling to ground).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Active {
    /// High is active.
    #[default]
    High,
    /// Low is active.
    Low,
}

impl Active {
    /// The level to drive for `active`.
    pub fn level(self, active: bool) -> Level {
        match (self, active) {
            (Active::High, true) | (Active::Low, false) => Level::High,
            (Active::High, false) | (Active::Low, true) => Level::Low,
        }
    }

    /// Whether `level` means active.
    pub fn is_active(self, level: Level) -> bool {
        self.level(true) == level
    }
}

/// An output line as the backend sees it: drives a level.
pub trait OutputLine: Send {
    /// Drives `level` on the line.
    fn write(&mut self, level: Level) -> Result<()>;
}

/// An input line as the backend sees it: reads a level. Debouncing is done above it, by polling
/// (see [`crate::gpio::Debouncer`]), the same way on every backend.
pub trait InputLine: Send {
    /// The level on the line now.
    fn read(&self) -> Result<Level>;
}

/// A hardware PWM output (a servo's control line).
pub trait PwmOutput: Send {
    /// Outputs pulses `pulse` wide every `period`, and enables the output.
    fn set(&mut self, period: Duration, pulse: Duration) -> Result<()>;
    /// Stops the output (the line stays low).
    fn disable(&mut self) -> Result<()>;
}

/// Opens lines by number (the BCM GPIO number on a Raspberry Pi, the line offset on a GPIO
/// character device), each with a label that says what it drives.
pub trait GpioDriver: Send + Sync {
    /// What this driver drives, e.g. `rppal (Raspberry Pi 4)` or `/dev/gpiochip0`.
    fn name(&self) -> String;
    /// Claims `pin` as an output driving `initial` from the first instant.
    fn output(&self, pin: u32, label: &str, initial: Level) -> Result<Box<dyn OutputLine>>;
    /// Claims `pin` as an input.
    fn input(&self, pin: u32, label: &str) -> Result<Box<dyn InputLine>>;
    /// Claims the hardware PWM channel behind `pin`.
    fn pwm(&self, pin: u32, label: &str) -> Result<Box<dyn PwmOutput>>;
}

/// An output line with its polarity: callers say active or inactive, never high or low.
pub struct Output {
    line: Box<dyn OutputLine>,
    pin: u32,
    active: Active,
    is_active: bool,
}

impl Output {
    /// Claims `pin` on `driver`, driving it active or inactive (`initially_active`) from the start.
    pub fn open(
        driver: &dyn GpioDriver,
        pin: u32,
        label: &str,
        active: Active,
        initially_active: bool,
    ) -> Result<Output> {
        let line = driver.output(pin, label, active.level(initially_active))?;
        Ok(Output {
            line,
            pin,
            active,
            is_active: initially_active,
        })
    }

    /// Drives the line active (`true`) or inactive.
    pub fn set_active(&mut self, active: bool) -> Result<()> {
        self.line.write(self.active.level(active))?;
        self.is_active = active;
        Ok(())
    }

    /// Whether the line was last driven active.
    pub fn is_active(&self) -> bool {
        self.is_active
    }

    /// The line's number.
    pub fn pin(&self) -> u32 {
        self.pin
    }
}

/// An input line with its polarity: callers ask "active?", never "high?".
pub struct Input {
    line: Box<dyn InputLine>,
    pin: u32,
    active: Active,
}

impl Input {
    /// Claims `pin` on `driver` as an input that is active at `active`.
    pub fn open(driver: &dyn GpioDriver, pin: u32, label: &str, active: Active) -> Result<Input> {
        Ok(Input {
            line: driver.input(pin, label)?,
            pin,
            active,
        })
    }

    /// Whether the line reads active now.
    pub fn is_active(&self) -> Result<bool> {
        Ok(self.active.is_active(self.line.read()?))
    }

    /// The level that means `active` on this line, for messages.
    pub fn level_for(&self, active: bool) -> Level {
        self.active.level(active)
    }

    /// The line's number.
    pub fn pin(&self) -> u32 {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_low_inverts_both_ways() {
        assert_eq!(Active::High.level(true), Level::High);
        assert_eq!(Active::Low.level(true), Level::Low);
        assert_eq!(Active::Low.level(false), Level::High);
        assert!(Active::Low.is_active(Level::Low));
        assert!(!Active::Low.is_active(Level::High));
        assert!(Active::High.is_active(Level::High));
    }
}
