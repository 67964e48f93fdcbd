//! The host's ledger: every financial request it processed, keyed by terminal, batch and STAN, with
//! the money it moved. Net effects are what the oracle compares with the terminal's records.
//!
//! In proxy mode the same ledger is an observation, not the real host's books: each reply of the
//! real host is booked by the simulator's rules (0210 approved = posting, void 0210 approved =
//! posting back, 0410 00 = reversal applied once, 0510 = settlement compared with the observed
//! totals), so it says what the acquirer booked as far as the wire shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Key of a financial request: terminal id, batch number, STAN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// Field 41.
    pub tid: String,
    /// Field 60.2.
    pub batch: String,
    /// Field 11.
    pub stan: String,
}

/// What a financial request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A purchase.
    Sale,
    /// A void of an earlier sale.
    Void,
}

/// One processed sale or void.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Terminal, batch, STAN.
    pub key: Key,
    /// Sale or void.
    pub kind: EntryKind,
    /// Amount in fen.
    pub amount: u64,
    /// The response code the host gave.
    pub response_code: String,
    /// Retrieval reference number given on approval.
    pub rrn: String,
    /// Authorization code given on approval.
    pub auth_code: String,
    /// For a void, the sale it voids.
    pub original: Option<Key>,
    /// Reversal requests received for this entry.
    pub reversal_requests: u32,
    /// Reversals that moved money (more than one only with idempotency off).
    pub reversals_applied: u32,
    /// For a sale: STANs of voids applied to it and not reversed.
    pub voided_by: Vec<String>,
    /// Host clock (ns) when it was processed.
    pub t_ns: u64,
}

impl Entry {
    /// True when the host approved it.
    pub fn approved(&self) -> bool {
        self.response_code == "00"
    }
}

/// A movement of money caused by a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The sale whose money moved.
    pub sale: Key,
    /// Fen debited (+) or credited back (−).
    pub delta: i64,
    /// What caused it, e.g. "reversal 000003 (98)".
    pub cause: String,
    /// Host clock (ns).
    pub t_ns: u64,
}

/// A settlement request and how it compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Terminal id.
    pub tid: String,
    /// Batch settled.
    pub batch: String,
    /// Net sale count and amount as the terminal reported them.
    pub terminal_totals: (u32, u64),
    /// Net sale count and amount from the host's ledger.
    pub host_totals: (u32, u64),
    /// Host clock (ns).
    pub t_ns: u64,
}

impl Settlement {
    /// True when both sides agree.
    pub fn balanced(&self) -> bool {
        self.terminal_totals == self.host_totals
    }
}

/// The host's books.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Sales and voids by key.
    pub entries: BTreeMap<String, Entry>,
    /// Money movements in order.
    pub postings: Vec<Posting>,
    /// Settlements in order.
    pub settlements: Vec<Settlement>,
    /// Sign-ons per terminal id.
    pub signons: BTreeMap<String, u32>,
    /// Financial requests refused because their STAN was already used in the batch (94).
    pub duplicate_stans: Vec<Key>,
    /// Reversals for which no original was found (answered 25).
    pub orphan_reversals: Vec<Key>,
}

impl Key {
    /// The ledger's text key "TID/BATCH/STAN".
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.tid, self.batch, self.stan)
    }
}

impl Ledger {
    /// The entry for `key`.
    pub fn entry(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(&key.id())
    }

    /// The net amount the host holds for the sale `key`: its approval minus reversals and voids.
    pub fn net(&self, sale: &Key) -> i64 {
        self.postings
            .iter()
            .filter(|p| &p.sale == sale)
            .map(|p| p.delta)
            .sum()
    }

    /// Net count and amount of the sales of a batch that still hold money.
    pub fn batch_totals(&self, tid: &str, batch: &str) -> (u32, u64) {
        self.entries
            .values()
            .filter(|e| e.kind == EntryKind::Sale && e.key.tid == tid && e.key.batch == batch)
            .map(|e| self.net(&e.key))
            .filter(|&net| net != 0)
            .fold((0, 0), |(count, sum), net| {
                (count + 1, sum.saturating_add_signed(net))
            })
    }

    pub(crate) fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.key.id(), entry);
    }

    pub(crate) fn entry_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        self.entries.get_mut(&key.id())
    }

    pub(crate) fn post(&mut self, sale: &Key, delta: i64, cause: String, t_ns: u64) {
        self.postings.push(Posting {
            sale: sale.clone(),
            delta,
            cause,
            t_ns,
        });
    }
}
