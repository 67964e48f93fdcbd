//! The simulated lab: the acquirer host simulator and the `posterm` terminal as real processes —
//! ISO 8583 over TCP, a PTY console read through the serial port code, an NVM folder whose
//! unflushed state a power cut (SIGKILL) loses, and a card slot file — plus terminal profiles
//! that turn console lines into canonical events.

mod host;
mod lab;
mod paths;

pub use host::{HostProcess, JournalFeed};
pub use lab::{Lab, LabOptions};
pub use paths::{fixture, program, workspace_root};
pub use posrig_core::capability::ConsoleLine;
pub use posrig_core::console_log::ConsoleLog;
pub use posrig_core::oracle::{Verdict, Violation};
pub use posrig_core::profile::{ConsoleSettings, Event, Profile, SALE_ENDINGS};
