//! The rig's errors: each says which capability or file is concerned, what failed and why, in
//! words a lab engineer can act on.

use std::path::PathBuf;

/// Anything that can go wrong in the rig.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// A configuration value is wrong; names the file, the line and the field.
    #[error("{path}:{line}: {field}: {problem}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// The dotted key, e.g. `link.backend`.
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// An actuator or sensor did not do what it was asked.
    #[error("{capability}: {action} failed: {reason}")]
    Actuator {
        /// The capability, e.g. "power (sim)".
        capability: String,
        /// What was asked, e.g. "off".
        action: String,
        /// Why it failed.
        reason: String,
    },
    /// The rig lacks a capability a request needs.
    #[error("this rig has no {0}; add it to the rig configuration")]
    Missing(String),
    /// Input or output to a device or file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, already phrased for a person.
    #[error("{0}")]
    Other(String),
}

impl RigError {
    /// An actuator failure.
    pub fn actuator(capability: &str, action: &str, reason: impl std::fmt::Display) -> RigError {
        RigError::Actuator {
            capability: capability.to_string(),
            action: action.to_string(),
            reason: reason.to_string(),
        }
    }

    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> RigError {
        RigError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The rig's result type.
pub type Result<T, E = RigError> = std::result::Result<T, E>;
