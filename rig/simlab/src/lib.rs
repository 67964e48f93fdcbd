//! The simulated lab: the acquirer host simulator and the `posterm` terminal as real processes —
//! ISO 8583 over TCP, a PTY console read through the serial port code, an NVM folder whose
//! unflushed state a power cut (SIGKILL) loses, and a card slot file — plus terminal profiles
//! that turn console lines into canonical events.

mod console;
mod host;
mod lab;
pub mod oracle;
mod paths;


pub use console::{ConsoleLine, ConsoleTap};
pub use host::{HostProcess, JournalFeed};
pub use lab::{Lab, LabOptions, SALE_ENDINGS};
pub use paths::{fixture, program, workspace_root};
pub use posrig_core::profile::{ConsoleSettings, Event, Profile};
