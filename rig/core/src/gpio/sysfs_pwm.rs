//! Linux sysfs PWM (`/sys/class/pwm/pwmchipN/pwmM`): the servo's control line on a generic
//! board. Times are written in nanoseconds, as the kernel's PWM ABI wants them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Result, RigError};
use crate::gpio::lines::PwmOutput;

/// Where the kernel exposes its PWM chips.
pub const SYSFS_PWM_ROOT: &str = "/sys/class/pwm";

/// How long to wait for a channel's directory to appear (and udev to fix its permissions) after
/// exporting it.
const EXPORT_WAIT: Duration = Duration::from_secs(1);

/// A sysfs PWM channel that drives the PWM signal of a GPIO line (the line's pin mux must route
/// the channel to it, e.g. with a device-tree overlay).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysfsPwmConfig {
    /// The GPIO line the channel comes out on (for pin-conflict checks and to find the channel).
    pub pin: u32,
    /// N in `/sys/class/pwm/pwmchipN`.
    pub pwmchip: u32,
    /// M in `/sys/class/pwm/pwmchipN/pwmM`.
    pub channel: u32,
}

/// Writes the period and the pulse width in an order that keeps the pulse no longer than the
/// period at every step, as the kernel requires. `current_period` is the period in force.
pub(crate) fn write_in_order(
    current_period: Duration,
    period: Duration,
    pulse: Duration,
    mut write_period: impl FnMut(Duration) -> Result<()>,
    mut write_pulse: impl FnMut(Duration) -> Result<()>,
) -> Result<()> {
    if period >= current_period {
        write_period(period)?;
        write_pulse(pulse)
    } else {
        write_pulse(pulse)?;
        write_period(period)
    }
}

/// One exported sysfs PWM channel; disabled when dropped.
#[derive(Debug)]
pub struct SysfsPwm {
    dir: PathBuf,
    period: Duration,
}

impl SysfsPwm {
    /// Exports channel `channel` of `root/pwmchip<pwmchip>` (unless already exported) and opens it.
    /// `root` is [`SYSFS_PWM_ROOT`] on a real board.
    pub fn open(root: &Path, pwmchip: u32, channel: u32) -> Result<SysfsPwm> {
        let chip = root.join(format!("pwmchip{pwmchip}"));
        if !chip.is_dir() {
            return Err(RigError::actuator(
                "pwm (sysfs)",
                "open",
                format!(
                    "no PWM chip {} here; enable the PWM overlay for this board",
                    chip.display()
                ),
            ));
        }
        let dir = chip.join(format!("pwm{channel}"));
        if !dir.is_dir() {
            write(&chip.join("export"), &channel.to_string())?;
            let start = Instant::now();
            while !dir.join("enable").is_file() {
                if start.elapsed() > EXPORT_WAIT {
                    return Err(RigError::actuator(
                        "pwm (sysfs)",
                        "open",
                        format!(
                            "{} did not appear after exporting channel {channel}",
                            dir.display()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let period = read_ns(&dir.join("period"))?;
        Ok(SysfsPwm { dir, period })
    }
}

impl PwmOutput for SysfsPwm {
    fn set(&mut self, period: Duration, pulse: Duration) -> Result<()> {
        let dir = &self.dir;
        write_in_order(
            self.period,
            period,
            pulse,
            |p| write(&dir.join("period"), &p.as_nanos().to_string()),
            |p| write(&dir.join("duty_cycle"), &p.as_nanos().to_string()),
        )?;
        self.period = period;
        write(&self.dir.join("enable"), "1")
    }

    fn disable(&mut self) -> Result<()> {
        write(&self.dir.join("enable"), "0")
    }
}

impl Drop for SysfsPwm {
    fn drop(&mut self) {
        // Best effort: the channel stops pulsing; there is no caller left to report to.
        let _ = self.disable();
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| RigError::io(format!("writing {value} to {}", path.display()), e))
}

fn read_ns(path: &Path) -> Result<Duration> {
    let text =
        std::fs::read_to_string(path).map_err(|e| RigError::io(format!("reading {}", path.display()), e))?;
    let ns = text.trim().parse::<u64>().map_err(|e| {
        RigError::actuator(
            "pwm (sysfs)",
            "open",
            format!("{} reads {text:?}: {e}", path.display()),
        )
    })?;
    Ok(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_period_is_written_after_the_pulse() {
        let mut order = Vec::new();
        let log = std::cell::RefCell::new(&mut order);
        write_in_order(
            Duration::from_millis(20),
            Duration::from_millis(10),
            Duration::from_millis(2),
            |_| {
                log.borrow_mut().push("period");
                Ok(())
            },
            |_| {
                log.borrow_mut().push("pulse");
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(order, ["pulse", "period"]);
    }
}
