//! Power to the terminal.

use std::fmt;

use crate::error::Result;

/// Whether the terminal has power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Powered.
    On,
    /// Not powered.
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// Switches the terminal's supply (a relay on hardware, process supervision on the simulator).
/// Each call returns once the change is done and, where the backend can, confirmed.
pub trait PowerSwitch: Send + Sync {
    /// Restores power.
    fn on(&self) -> Result<()>;
    /// Cuts power without warning.
    fn off(&self) -> Result<()>;
    /// The current state, read back where the backend can.
    fn state(&self) -> Result<PowerState>;
}
