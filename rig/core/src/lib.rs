//! The rig controller: capabilities (one small trait per thing the rig does to the terminal),
//! the simulator backends, the console reader, the timeline, the trigger engine, the oracle and
//! the safe state. Python describes, Rust acts, the timeline records, the oracle judges.

pub mod capability;
pub mod error;
pub mod gpio;
pub mod linux;
mod literals;
pub mod profile;
mod straight;
pub mod timeline;

pub use error::{Result, RigError};
pub mod actuators;
pub mod config;
pub mod console_log;
pub mod oracle;
pub mod rig;
pub mod serial;
pub mod sim;
pub mod trigger;
