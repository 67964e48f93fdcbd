//! The generic Linux backend: lines through the GPIO character device (`/dev/gpiochipN`), the
//! servo's PWM through sysfs PWM. Compiled everywhere; without the chip the constructor fails.

use std::path::{Path, PathBuf};

use gpiocdev::line::Value;
use gpiocdev::Request;
use serde::Deserialize;

use crate::error::{Result, RigError};
use crate::gpio::lines::{GpioDriver, InputLine, Level, OutputLine, PwmOutput};
use crate::gpio::sysfs_pwm::{SysfsPwm, SysfsPwmConfig, SYSFS_PWM_ROOT};

const CAPABILITY: &str = "gpio (cdev)";

/// Which GPIO chip to use, and which of its lines carry a sysfs PWM channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdevConfig {
    /// The character device, e.g. `/dev/gpiochip0`; pins are its line offsets.
    pub chip: PathBuf,
    /// The lines whose PWM comes from a sysfs PWM channel (for a servo).
    #[serde(default)]
    pub pwm: Vec<SysfsPwmConfig>,
}

/// A GPIO chip through the character device.
pub struct CdevGpio {
    chip: PathBuf,
    lines: u32,
    pwm: Vec<SysfsPwmConfig>,
}

impl CdevGpio {
    /// Opens the chip named in `config`; fails with "no GPIO character device here: ..." when it
    /// is missing or is not a GPIO chip.
    pub fn open(config: &CdevConfig) -> Result<CdevGpio> {
        let fail = |e: gpiocdev::Error| {
            RigError::actuator(
                CAPABILITY,
                "open",
                format!("no GPIO character device here: {}: {e}", config.chip.display()),
            )
        };
        let chip = gpiocdev::chip::Chip::from_path(&config.chip).map_err(fail)?;
        let info = chip.info().map_err(fail)?;
        Ok(CdevGpio {
            chip: config.chip.clone(),
            lines: info.num_lines,
            pwm: config.pwm.clone(),
        })
    }

    fn request(&self, pin: u32, label: &str, output: Option<Level>) -> Result<Request> {
        let action = format!("claim line {pin} for {label}");
        if pin >= self.lines {
            return Err(RigError::actuator(
                CAPABILITY,
                &action,
                format!(
                    "{} has lines 0 to {}",
                    self.chip.display(),
                    self.lines.saturating_sub(1)
                ),
            ));
        }
        let mut builder = Request::builder();
        builder.on_chip(&self.chip).with_consumer(label).with_line(pin);
        match output {
            Some(level) => builder.as_output(to_value(level)),
            None => builder.as_input(),
        };
        builder
            .request()
            .map_err(|e| RigError::actuator(CAPABILITY, &action, e))
    }
}

fn to_value(level: Level) -> Value {
    match level {
        Level::Low => Value::Inactive,
        Level::High => Value::Active,
    }
}

impl GpioDriver for CdevGpio {
    fn name(&self) -> String {
        self.chip.display().to_string()
    }

    fn output(&self, pin: u32, label: &str, initial: Level) -> Result<Box<dyn OutputLine>> {
        let request = self.request(pin, label, Some(initial))?;
        Ok(Box::new(CdevLine { request, pin }))
    }

    fn input(&self, pin: u32, label: &str) -> Result<Box<dyn InputLine>> {
        let request = self.request(pin, label, None)?;
        Ok(Box::new(CdevLine { request, pin }))
    }

    fn pwm(&self, pin: u32, label: &str) -> Result<Box<dyn PwmOutput>> {
        let channel = self.pwm.iter().find(|c| c.pin == pin).ok_or_else(|| {
            RigError::actuator(
                CAPABILITY,
                &format!("claim the PWM on line {pin} for {label}"),
                format!(
                    "line {pin} has no sysfs PWM channel; list it under `pwm` with its pwmchip and channel"
                ),
            )
        })?;
        Ok(Box::new(SysfsPwm::open(
            Path::new(SYSFS_PWM_ROOT),
            channel.pwmchip,
            channel.channel,
        )?))
    }
}

/// One requested line; the kernel releases it when the request is dropped.
struct CdevLine {
    request: Request,
    pin: u32,
}

impl OutputLine for CdevLine {
    fn write(&mut self, level: Level) -> Result<()> {
        self.request
            .set_value(self.pin, to_value(level))
            .map_err(|e| RigError::actuator(CAPABILITY, &format!("drive line {} {level}", self.pin), e))
    }
}

impl InputLine for CdevLine {
    fn read(&self) -> Result<Level> {
        match self.request.value(self.pin) {
            Ok(Value::Active) => Ok(Level::High),
            Ok(Value::Inactive) => Ok(Level::Low),
            Err(e) => Err(RigError::actuator(
                CAPABILITY,
                &format!("read line {}", self.pin),
                e,
            )),
        }
    }
}
