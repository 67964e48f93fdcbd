//! The acquirer host: a simulator, or a proxy in front of a real acquirer test host.
//!
//! The simulator serves sign-on (0800), sale and void (0200), reversal (0400) and settlement
//! (0500) as `shared/domain.md` describes and keeps a ledger per terminal, batch and STAN. In
//! proxy mode ([`Mode::Proxy`]) the host relays each terminal connection to the real host and
//! books what the real host's replies show. Either way it applies the fault knobs of domain.md
//! §6 per message kind and STAN, changeable while it runs, and journals every wire message on the
//! rig's monotonic clock. Run it in-process with [`Host::start`] or [`Host::start_with_mode`], or
//! as the `acqhost` program with a JSON control port ([`control`]).

mod acquirer;
mod clock;
pub mod control;
mod delivery;
mod journal;
mod knobs;
mod ledger;
mod proxy;
mod server;

pub use acquirer::{format_totals, parse_totals, Acquirer, Decision, Settings};
pub use clock::monotonic_ns;
pub use journal::{Direction, JournalEntry};
pub use knobs::{Action, AlteredField, Kind, Rule, Rulebook};
pub use ledger::{Entry, EntryKind, Key, Ledger, Posting, Settlement};
pub use server::{Host, HostConfig, MaintenanceHook, Mode, Observer};
