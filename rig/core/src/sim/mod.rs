//! The simulator backends: the terminal is the `posterm` process (power = process supervision,
//! a SIGKILL is the power cut), its console a PTY read through the serial port code, its card
//! slot a file, its link a veth pair into its own network namespace (with the privilege) or a
//! userspace TCP proxy (without).

pub mod card;
pub mod netns;
pub mod power;
pub mod proxy;
