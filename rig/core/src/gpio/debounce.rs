//! Debouncing by polling: an input's new state counts only once it has read the same for the
//! debounce time. One state machine serves the feeders' sensors, the relay's read-back and the
//! input watcher, on every backend.

use std::time::Duration;

use crate::error::Result;
use crate::gpio::lines::Input;
use crate::timeline::now_ns;

/// How often inputs are sampled while waiting or watching.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A debounced change of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The new state: `true` when the input became active.
    pub active: bool,
    /// When the input first read the new state (rig clock, ns).
    pub since_ns: u64,
    /// When it had read it for the debounce time and the change was reported (rig clock, ns).
    pub confirmed_ns: u64,
}

/// Turns raw readings into debounced edges.
#[derive(Debug, Clone)]
pub struct Debouncer {
    stable: bool,
    candidate: Option<(bool, u64)>,
    debounce_ns: u64,
}

impl Debouncer {
    /// A debouncer whose stable state starts as `initial`.
    pub fn new(initial: bool, debounce: Duration) -> Debouncer {
        Debouncer {
            stable: initial,
            candidate: None,
            debounce_ns: debounce.as_nanos() as u64,
        }
    }

    /// The debounced state.
    pub fn stable(&self) -> bool {
        self.stable
    }

    /// Feeds a reading taken at `t_ns`; returns the edge when the stable state changes.
    pub fn feed(&mut self, active: bool, t_ns: u64) -> Option<Edge> {
        if active == self.stable {
            self.candidate = None;
            return None;
        }
        let since_ns = match self.candidate {
            Some((level, since)) if level == active => since,
            _ => {
                self.candidate = Some((active, t_ns));
                t_ns
            }
        };
        if t_ns.saturating_sub(since_ns) < self.debounce_ns {
            return None;
        }
        self.stable = active;
        self.candidate = None;
        Some(Edge {
            active,
            since_ns,
            confirmed_ns: t_ns,
        })
    }
}

/// How a wait for an input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The input read the wanted state for the debounce time.
    Confirmed,
    /// The timeout passed first; `last_active` is the last reading.
    TimedOut {
        /// The last reading.
        last_active: bool,
    },
}

/// Polls `input` until it has read `want_active` for `debounce`, or `timeout` passes.
pub fn wait_for(input: &Input, want_active: bool, debounce: Duration, timeout: Duration) -> Result<Wait> {
    let start = now_ns();
    let timeout_ns = timeout.as_nanos() as u64;
    let mut debouncer = Debouncer::new(!want_active, debounce);
    loop {
        let active = input.is_active()?;
        let t_ns = now_ns();
        if debouncer.feed(active, t_ns).is_some() {
            return Ok(Wait::Confirmed);
        }
        if t_ns.saturating_sub(start) >= timeout_ns {
            return Ok(Wait::TimedOut { last_active: active });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn bounces_shorter_than_the_debounce_are_not_reported() {
        let mut d = Debouncer::new(false, Duration::from_millis(5));
        assert_eq!(d.feed(true, 0), None);
        assert_eq!(d.feed(false, 2 * MS), None);
        assert_eq!(d.feed(true, 3 * MS), None);
        assert_eq!(d.feed(true, 7 * MS), None);
        let edge = d.feed(true, 8 * MS).expect("stable for 5 ms");
        assert_eq!(
            (edge.active, edge.since_ns, edge.confirmed_ns),
            (true, 3 * MS, 8 * MS)
        );
        assert!(d.stable());
        assert_eq!(d.feed(true, 20 * MS), None);
    }

    #[test]
    fn zero_debounce_reports_at_once() {
        let mut d = Debouncer::new(true, Duration::ZERO);
        assert_eq!(d.feed(false, 4).map(|e| e.active), Some(false));
    }
}
