//! The Raspberry Pi backend (Pi 3, 4, 5): rppal's GPIO for lines, its hardware PWM for the
//! servo (GPIO 12, 13, 18, 19). Compiled everywhere; off a Pi the constructor fails.

use std::time::Duration;

use rppal::gpio::Gpio;
use rppal::pwm::{Channel, Polarity, Pwm};

use crate::error::{Result, RigError};
use crate::gpio::board::Board;
use crate::gpio::lines::{GpioDriver, InputLine, Level, OutputLine, PwmOutput};
use crate::gpio::sysfs_pwm::write_in_order;

const CAPABILITY: &str = "gpio (rppal)";

fn to_rppal(level: Level) -> rppal::gpio::Level {
    match level {
        Level::Low => rppal::gpio::Level::Low,
        Level::High => rppal::gpio::Level::High,
    }
}

/// The Raspberry Pi's GPIO header.
pub struct RppalGpio {
    gpio: Gpio,
    board: Board,
}

impl RppalGpio {
    /// Opens the GPIO of `board`; fails with "no Raspberry Pi GPIO here: ..." off a Pi.
    pub fn new(board: Board) -> Result<RppalGpio> {
        let gpio = Gpio::new()
            .map_err(|e| RigError::actuator(CAPABILITY, "open", format!("no Raspberry Pi GPIO here: {e}")))?;
        Ok(RppalGpio { gpio, board })
    }

    fn pin(&self, pin: u32, label: &str) -> Result<rppal::gpio::Pin> {
        let action = format!("claim GPIO{pin} for {label}");
        self.board
            .check_pin(pin)
            .map_err(|problem| RigError::actuator(CAPABILITY, &action, problem))?;
        self.gpio
            .get(pin as u8)
            .map_err(|e| RigError::actuator(CAPABILITY, &action, e))
    }
}

impl GpioDriver for RppalGpio {
    fn name(&self) -> String {
        format!("rppal ({})", self.board)
    }

    fn output(&self, pin: u32, label: &str, initial: Level) -> Result<Box<dyn OutputLine>> {
        let mut line = self.pin(pin, label)?.into_output();
        line.write(to_rppal(initial));
        Ok(Box::new(line))
    }

    fn input(&self, pin: u32, label: &str) -> Result<Box<dyn InputLine>> {
        Ok(Box::new(self.pin(pin, label)?.into_input()))
    }

    fn pwm(&self, pin: u32, label: &str) -> Result<Box<dyn PwmOutput>> {
        let action = format!("claim the PWM on GPIO{pin} for {label}");
        self.board
            .check_pwm_pin(pin)
            .map_err(|problem| RigError::actuator(CAPABILITY, &action, problem))?;
        let channel = self
            .board
            .pwm_channel(pin)
            .and_then(|c| Channel::try_from(c).ok())
            .ok_or_else(|| RigError::actuator(CAPABILITY, &action, "no PWM channel"))?;
        let pwm = Pwm::new(channel).map_err(|e| {
            RigError::actuator(
                CAPABILITY,
                &action,
                format!("no hardware PWM {channel} here ({e}); enable it with a pwm overlay in config.txt"),
            )
        })?;
        pwm.set_polarity(Polarity::Normal)
            .map_err(|e| RigError::actuator(CAPABILITY, &action, e))?;
        Ok(Box::new(RppalPwm { pwm, pin }))
    }
}

impl OutputLine for rppal::gpio::OutputPin {
    fn write(&mut self, level: Level) -> Result<()> {
        rppal::gpio::OutputPin::write(self, to_rppal(level));
        Ok(())
    }
}

impl InputLine for rppal::gpio::InputPin {
    fn read(&self) -> Result<Level> {
        Ok(match rppal::gpio::InputPin::read(self) {
            rppal::gpio::Level::Low => Level::Low,
            rppal::gpio::Level::High => Level::High,
        })
    }
}

/// A Raspberry Pi hardware PWM channel; rppal disables it when dropped.
struct RppalPwm {
    pwm: Pwm,
    pin: u32,
}

impl RppalPwm {
    fn fail(&self, e: rppal::pwm::Error) -> RigError {
        RigError::actuator(CAPABILITY, &format!("set the PWM on GPIO{}", self.pin), e)
    }
}

impl PwmOutput for RppalPwm {
    fn set(&mut self, period: Duration, pulse: Duration) -> Result<()> {
        let current = self.pwm.period().map_err(|e| self.fail(e))?;
        write_in_order(
            current,
            period,
            pulse,
            |p| self.pwm.set_period(p).map_err(|e| self.fail(e)),
            |p| self.pwm.set_pulse_width(p).map_err(|e| self.fail(e)),
        )?;
        self.pwm.enable().map_err(|e| self.fail(e))
    }

    fn disable(&mut self) -> Result<()> {
        self.pwm.disable().map_err(|e| self.fail(e))
    }
}
