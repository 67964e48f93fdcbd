//! What `rigctl` commands ask a running rig, one JSON object per line over its Unix socket.

use std::path::PathBuf;

use posrig_core::actuators::Action;
use serde::{Deserialize, Serialize};

/// A request to the running rig.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Power, card, link and host state.
    Status,
    /// Do an action now.
    Perform {
        /// The action.
        action: Action,
    },
    /// Do an action, hold it, undo it.
    PerformFor {
        /// The action.
        action: Action,
        /// How long to hold it, in milliseconds.
        hold_ms: u64,
    },
    /// Type a line on the terminal's console.
    Type {
        /// The text (a line ending is added).
        text: String,
    },
    /// Console lines from position `since` on; with `follow`, keep streaming.
    Console {
        /// First line wanted.
        since: usize,
        /// Keep streaming new lines.
        follow: bool,
    },
    /// Host journal entries from position `since` on; with `follow`, keep streaming.
    Journal {
        /// First entry wanted.
        since: u64,
        /// Keep streaming new entries.
        follow: bool,
    },
}

/// Where a rig's control socket lives: `$XDG_RUNTIME_DIR/posrig-NAME.sock`, or under /tmp.
pub fn socket_path(rig_name: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    dir.join(format!("posrig-{rig_name}.sock"))
}
