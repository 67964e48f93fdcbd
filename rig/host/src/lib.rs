//! The acquirer host simulator.
//!
//! Serves sign-on (0800), sale and void (0200), reversal (0400) and settlement (0500) as
//! `shared/domain.md` describes; keeps a ledger per terminal, batch and STAN; applies the fault
//! knobs of domain.md §6 per message kind and STAN, changeable while it runs; and journals every
//! wire message on the rig's monotonic clock. Run it in-process with [`Host::start`], or as the
//! `acqhost` program with a JSON control port ([`control`]).

mod acquirer;
mod clock;
pub mod control;
mod journal;
mod knobs;
mod ledger;
mod server;

pub use acquirer::{format_totals, parse_totals, Acquirer, Decision, Settings};
pub use clock::monotonic_ns;
pub use journal::{Direction, JournalEntry};
pub use knobs::{Action, AlteredField, Kind, Rule, Rulebook};
pub use ledger::{Entry, EntryKind, Key, Ledger, Posting, Settlement};
pub use server::{Host, HostConfig, Observer};
