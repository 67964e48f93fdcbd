//! The terminal's supply through a relay on a GPIO output, optionally confirmed by a read-back
//! input wired to the switched rail.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::capability::{PowerState, PowerSwitch};
use crate::error::{Result, RigError};
use crate::gpio::debounce::{wait_for, Wait};
use crate::gpio::lines::{Active, GpioDriver, Input, Output};

const CAPABILITY: &str = "power (gpio relay)";

/// An input wired to the switched rail (through a divider or an optocoupler).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadbackConfig {
    /// The input's number.
    pub pin: u32,
    /// The level the input reads while the terminal is powered.
    #[serde(default)]
    pub active: Active,
    /// How long after switching (and settling) the rail may take to read as expected.
    pub timeout_ms: u64,
}

/// A relay that switches the terminal's supply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioRelayConfig {
    /// The output driving the relay.
    pub pin: u32,
    /// The output level at which the terminal is powered: `high` for a relay module that closes
    /// the supply on a high input; `low` for active-low modules, or when the supply goes
    /// through the normally-closed contact of an active-high module.
    #[serde(default)]
    pub active: Active,
    /// Time given to the relay contacts and the rail after each switch, before the call returns.
    #[serde(default)]
    pub settle_ms: u64,
    /// An input that must confirm the rail after every switch.
    #[serde(default)]
    pub readback: Option<ReadbackConfig>,
}

impl GpioRelayConfig {
    /// The pins it uses, each with what uses it.
    pub fn pins(&self) -> Vec<(String, u32)> {
        let mut pins = vec![("the power relay".to_string(), self.pin)];
        if let Some(readback) = &self.readback {
            pins.push(("the power read-back".to_string(), readback.pin));
        }
        pins
    }
}

fn powered(on: bool) -> &'static str {
    if on {
        "powered"
    } else {
        "unpowered"
    }
}

/// A [`PowerSwitch`] on a relay. The terminal is powered from the moment the relay is opened
/// (the rig's safe state).
pub struct GpioRelay {
    output: Mutex<Output>,
    readback: Option<(Mutex<Input>, Duration)>,
    settle: Duration,
}

impl GpioRelay {
    /// Claims the relay's output (driving it to "powered") and the read-back input, if any.
    pub fn new(driver: &dyn GpioDriver, config: &GpioRelayConfig) -> Result<GpioRelay> {
        let readback = match &config.readback {
            Some(rb) => Some((
                Mutex::new(Input::open(driver, rb.pin, "power read-back", rb.active)?),
                Duration::from_millis(rb.timeout_ms),
            )),
            None => None,
        };
        let output = Output::open(driver, config.pin, "power relay", config.active, true)?;
        Ok(GpioRelay {
            output: Mutex::new(output),
            readback,
            settle: Duration::from_millis(config.settle_ms),
        })
    }

    fn switch(&self, on: bool) -> Result<()> {
        let pin = {
            let mut output = self.output.lock().expect("relay lock");
            output.set_active(on)?;
            output.pin()
        };
        std::thread::sleep(self.settle);
        let Some((input, timeout)) = &self.readback else {
            return Ok(());
        };
        let failure = {
            let input = input.lock().expect("read-back lock");
            match wait_for(&input, on, Duration::ZERO, *timeout) {
                Ok(Wait::Confirmed) => return Ok(()),
                Ok(Wait::TimedOut { last_active }) => {
                    mismatch(pin, on, &input, last_active, self.settle + *timeout)
                }
                Err(e) => e,
            }
        };
        if !on {
            // Leave nothing actuated: the rig's safe state is power on.
            self.output.lock().expect("relay lock").set_active(true)?;
        }
        Err(failure)
    }
}

/// The read-back disagreed with the relay for `waited`.
fn mismatch(pin: u32, on: bool, input: &Input, last_active: bool, waited: Duration) -> RigError {
    let action = if on { "on" } else { "off" };
    let restored = if on { "" } else { "; power restored" };
    RigError::actuator(
        CAPABILITY,
        action,
        format!(
            "switched GPIO{pin} {action}, but the read-back on GPIO{} still read '{}' ({}) {} ms later; \
             expected '{}' ({}); check the relay and its wiring{restored}",
            input.pin(),
            powered(last_active),
            input.level_for(last_active),
            waited.as_millis(),
            powered(on),
            input.level_for(on),
        ),
    )
}

impl PowerSwitch for GpioRelay {
    fn on(&self) -> Result<()> {
        self.switch(true)
    }

    fn off(&self) -> Result<()> {
        self.switch(false)
    }

    /// The read-back input's reading when there is one, else the state last switched to.
    fn state(&self) -> Result<PowerState> {
        let on = match &self.readback {
            Some((input, _)) => input.lock().expect("read-back lock").is_active()?,
            None => self.output.lock().expect("relay lock").is_active(),
        };
        Ok(if on { PowerState::On } else { PowerState::Off })
    }
}
