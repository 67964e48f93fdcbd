//! Capabilities: one small trait per thing the rig does to the terminal. A rig is assembled from
//! a configuration by naming a backend for each; suites never know which backend they run on.
//!
//! The traits are synchronous on purpose: every call is a short actuation (a GPIO write, a
//! netlink message, a signal) that the trigger engine must be able to make from the console's
//! read path without a task hop.

mod card;
mod console;
mod link;
mod power;

pub use card::CardFeeder;
pub use console::{Console, ConsoleLine, LineSink};
pub use link::{Impairment, Link, NetworkImpairment};
pub use power::{PowerState, PowerSwitch};
