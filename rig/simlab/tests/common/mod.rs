//! Helpers shared by the lab's scenario tests.

#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use posrig_host::{Direction, JournalEntry, Key, Ledger};
use posrig_simlab::oracle::{self, Violation};
use posrig_simlab::{Event, Lab, LabOptions};

/// Long enough for any single exchange with the short simulator T_resp, retries included.
pub const WAIT: Duration = Duration::from_secs(15);
pub const AMOUNT: u64 = 12_345;
/// Events that end a sale attempt on the terminal.
pub const OUTCOMES: [&str; 6] = [
    "approved",
    "declined",
    "terminated",
    "refused",
    "reversal_done",
    "reversal_failed",
];

pub fn lab_with(defects: &[&str], settings: &[&str]) -> Lab {
    let mut terminal_settings = vec!["policy.response_timeout_ms=800".to_string()];
    terminal_settings.extend(settings.iter().map(|s| s.to_string()));
    let lab = Lab::start(LabOptions {
        defects: defects.iter().map(|d| d.to_string()).collect(),
        terminal_settings,
        host_args: Vec::new(),
    })
    .expect("the simulated lab starts");
    lab.insert_card("unionpay-debit").expect("card in");
    lab
}

pub fn lab() -> Lab {
    lab_with(&[], &[])
}

/// Types `sale AMOUNT` and returns the console mark before it.
pub fn start_sale(lab: &Lab) -> usize {
    lab.type_command("sale", &[("amount", AMOUNT.to_string())])
        .expect("sale typed")
}

/// Runs a sale to its end and returns the event that ended it.
pub fn sale(lab: &Lab) -> (usize, Event) {
    let mark = start_sale(lab);
    let outcome = lab.wait_event(mark, WAIT, &OUTCOMES).expect("the sale ends");
    (mark, outcome)
}

pub fn messages(journal: &[JournalEntry]) -> Vec<(Direction, String, String)> {
    journal
        .iter()
        .filter(|e| e.direction != Direction::Event)
        .map(|e| {
            let mti = e.mti.clone().unwrap_or_default();
            (e.direction, mti, e.stan.clone().unwrap_or_default())
        })
        .collect()
}

pub fn financial(journal: &[JournalEntry]) -> Vec<&JournalEntry> {
    journal
        .iter()
        .filter(|e| matches!(e.mti.as_deref(), Some("0200" | "0210" | "0400" | "0410")))
        .collect()
}

pub fn sale_key(stan: &str) -> Key {
    Key {
        tid: "TERM0001".into(),
        batch: "000001".into(),
        stan: stan.into(),
    }
}

pub fn violations(lab: &Lab) -> (Ledger, Vec<Violation>) {
    let ledger = lab.host.ledger().expect("ledger");
    let view = lab.terminal_view().expect("terminal status");
    let found = oracle::check(&ledger, &view);
    (ledger, found)
}

/// The first journal entry going `direction` with `mti`.
pub fn find(journal: &[JournalEntry], direction: Direction, mti: &str) -> JournalEntry {
    journal
        .iter()
        .find(|e| e.direction == direction && e.mti.as_deref() == Some(mti))
        .unwrap_or_else(|| panic!("no {direction:?} {mti} in the journal"))
        .clone()
}
