//! A first oracle for the money invariants of domain.md §5 (1, 2, 4 and 6), computed from the
//! host's ledger and what the terminal showed on its console. It is what the lab's scenario tests
//! judge with; each violation names the invariant, the STAN and the evidence.

use std::collections::BTreeSet;

use posrig_host::{EntryKind, Ledger};

use posrig_core::profile::Event;

/// What the terminal holds, as its console showed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalView {
    /// STANs of sales the terminal committed as approved and did not void.
    pub committed: BTreeSet<String>,
    /// STAN of the reversal still pending in its NVM, per its last `status` line.
    pub pending_reversal: Option<String>,
}

impl TerminalView {
    /// Builds the view from a console's events: `approved` and `voided` events, and the
    /// `reversal` field of the last `status` event.
    pub fn from_events(events: &[Event]) -> TerminalView {
        let mut view = TerminalView::default();
        for event in events {
            match event.name.as_str() {
                "approved" => {
                    view.committed.insert(event.get("stan").to_string());
                }
                "voided" => {
                    view.committed.remove(event.get("original"));
                }
                "status" => {
                    let reversal = event.get("reversal");
                    view.pending_reversal = (reversal != "none")
                        .then(|| reversal.split('/').next().unwrap_or_default().to_string());
                }
                _ => {}
            }
        }
        view
    }
}

/// A broken invariant with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's number in domain.md §5.
    pub invariant: u8,
    /// The STAN concerned.
    pub stan: String,
    /// What was seen, in words.
    pub evidence: String,
}

/// Checks invariants 1, 2, 4 and 6 for every sale the host processed.
pub fn check(ledger: &Ledger, terminal: &TerminalView) -> Vec<Violation> {
    let mut violations = Vec::new();
    for entry in ledger.entries.values().filter(|e| e.kind == EntryKind::Sale) {
        let stan = entry.key.stan.clone();
        let net = ledger.net(&entry.key);
        let committed = terminal.committed.contains(&stan);
        let pending = terminal.pending_reversal.as_deref() == Some(stan.as_str());
        let mut violation = |invariant: u8, evidence: String| {
            violations.push(Violation {
                invariant,
                stan: stan.clone(),
                evidence,
            })
        };
        if committed && net != entry.amount as i64 {
            violation(
                1,
                format!(
                    "the terminal committed the sale but the host holds {net} of {}",
                    entry.amount
                ),
            );
        }
        if !committed && !pending && net != 0 {
            violation(
                1,
                format!("the host holds {net} for a sale the terminal did not commit and will not reverse"),
            );
        }
        if entry.approved()
            && !committed
            && !pending
            && entry.reversals_applied == 0
            && entry.voided_by.is_empty()
        {
            violation(
                6,
                "the host approved; the terminal has neither a record nor a reversal".to_string(),
            );
        }
        if net < 0 || entry.reversals_applied > 1 {
            violation(
                2,
                format!(
                    "reversed {} times, net {net}: applied more than once",
                    entry.reversals_applied
                ),
            );
        }
    }
    for key in &ledger.duplicate_stans {
        violations.push(Violation {
            invariant: 4,
            stan: key.stan.clone(),
            evidence: format!("STAN {} was used twice in batch {}", key.stan, key.batch),
        });
    }
    violations
}
