//! The terminal's network link and its impairments.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The terminal's network link (a veth or a real interface through netlink, or a userspace proxy).
pub trait Link: Send + Sync {
    /// Takes the link down: traffic stops as if the cable were pulled.
    fn down(&self) -> Result<()>;
    /// Brings the link back up.
    fn up(&self) -> Result<()>;
    /// True while the link is up.
    fn is_up(&self) -> Result<bool>;
}

/// Degradations of the path between terminal and host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Impairment {
    /// Added to every message in both directions.
    pub delay: Duration,
    /// Probability (0 to 1) that a message is silently dropped.
    pub drop: f64,
    /// Every message is silently dropped (connections stay open).
    pub blackhole: bool,
}

/// Degrades the path between terminal and host without taking the link down.
pub trait NetworkImpairment: Send + Sync {
    /// Replaces the impairment in force.
    fn apply(&self, impairment: &Impairment) -> Result<()>;
    /// Resets every open connection (RST in both directions).
    fn reset_connections(&self) -> Result<()>;
    /// Removes every impairment.
    fn clear(&self) -> Result<()> {
        self.apply(&Impairment::default())
    }
}
