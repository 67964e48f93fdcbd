//! Helpers shared by the lab's scenario tests.

#![allow(dead_code)] // each test file uses its own subset

pub mod reversals;

/// Defines one `#[test]` per reversal scenario of [`reversals`], run in the given [`Setup`].
#[allow(unused_macros)] // used by scenarios.rs and proxy_mode.rs only
macro_rules! reversal_scenarios {
    ($setup:expr) => {
        reversal_scenarios!($setup; p3_lost_reply_is_reversed_with_98_and_nothing_is_charged, p7_bad_mac_on_approval_reverses_with_a0_and_the_auth_code_after_signing_on_again, p14_pending_reversal_survives_a_power_cycle_and_goes_before_the_next_sale, w2_power_cut_right_after_the_request_left_is_reversed_after_boot, w2_with_reversal_after_send_the_cut_leaves_a_double_charge, w4_power_cut_before_completion_is_reversed_with_96_and_the_auth_code, w4_with_clear_reversal_before_log_the_cut_leaves_approved_at_host_and_nothing_on_the_terminal, c2_card_pulled_after_the_request_is_reversed_with_96, c3_card_answering_aac_is_reversed_with_96_and_its_icc_data, p4_late_reply_is_ignored_and_the_sale_reversed, p9_reply_with_a_wrong_stan_tid_or_amount_is_reversed_with_06, p12_reversal_refused_n_times_is_dropped_and_reported, p12_keep_and_block_refuses_the_next_sale, p13_no_sale_goes_online_while_a_reversal_is_pending_and_the_host_unreachable, v7_lost_void_reply_is_reversed_and_the_sale_stands, p16_settlement_sends_the_pending_reversal_first_and_balances);
    };
    ($setup:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                common::reversals::$name($setup)
            }
        )*
    };
}

use std::time::Duration;

use posrig_host::{Direction, JournalEntry, Key, Ledger};
pub use posrig_simlab::SALE_ENDINGS as OUTCOMES;
use posrig_simlab::{Event, Lab, LabOptions, Verdict};

/// Long enough for any single exchange with the short simulator T_resp, retries included.
pub const WAIT: Duration = Duration::from_secs(15);
pub const AMOUNT: u64 = 12_345;

/// How the terminal reaches the host simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Straight to the simulator.
    Direct,
    /// Through an `acqhost --upstream` proxy, which carries the knobs.
    Proxy,
}

/// A lab in `setup` with these `posterm` defects and settings, and the debit card in the slot.
pub fn lab_in(setup: Setup, defects: &[&str], settings: &[&str]) -> Lab {
    let mut terminal_settings = vec!["policy.response_timeout_ms=800".to_string()];
    terminal_settings.extend(settings.iter().map(|s| s.to_string()));
    let lab = Lab::start(LabOptions {
        defects: defects.iter().map(|d| d.to_string()).collect(),
        terminal_settings,
        host_args: Vec::new(),
        proxy: setup == Setup::Proxy,
    })
    .expect("the simulated lab starts");
    lab.insert_card("unionpay-debit").expect("card in");
    lab
}

pub fn lab_with(defects: &[&str], settings: &[&str]) -> Lab {
    lab_in(Setup::Direct, defects, settings)
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

/// The host's ledger and the oracle's verdict on the run so far.
pub fn judge(lab: &Lab) -> (Ledger, Verdict) {
    let verdict = lab.verdict().expect("a verdict");
    (lab.host.ledger().expect("ledger"), verdict)
}

/// The (invariant, STAN) of every violation the oracle found.
pub fn broken(verdict: &Verdict) -> Vec<(u8, String)> {
    verdict
        .violations
        .iter()
        .map(|v| (v.invariant, v.stan.clone()))
        .collect()
}

/// Asserts the oracle found no violation and nothing unresolved.
pub fn assert_passed(verdict: &Verdict) {
    assert!(verdict.passed(), "{verdict:#?}");
}

/// The first journal entry going `direction` with `mti`.
pub fn find(journal: &[JournalEntry], direction: Direction, mti: &str) -> JournalEntry {
    journal
        .iter()
        .find(|e| e.direction == direction && e.mti.as_deref() == Some(mti))
        .unwrap_or_else(|| panic!("no {direction:?} {mti} in the journal"))
        .clone()
}

/// True for a journal entry going `direction` with `mti`.
pub fn is(entry: &JournalEntry, direction: Direction, mti: &str) -> bool {
    entry.direction == direction && entry.mti.as_deref() == Some(mti)
}

/// A sale whose reply the host drops, after which the host goes into maintenance so the
/// terminal's reversal cannot get through. Returns the STAN left pending; maintenance stays on.
pub fn strand_a_reversal(lab: &Lab) -> String {
    lab.host
        .add_rule(serde_json::json!({"kind": "sale", "times": 1, "action": "drop_reply"}))
        .unwrap();
    let mut feed = lab.host.watch(0).unwrap();
    let mark = start_sale(lab);
    feed.wait_for(WAIT, |e| is(e, Direction::In, "0200")).unwrap();
    lab.host
        .set_settings(serde_json::json!({"maintenance": true}))
        .unwrap();
    let stranded = lab
        .wait_event(mark, WAIT, &["reversal_unreachable", "reversal_done"])
        .unwrap();
    assert_eq!(stranded.name, "reversal_unreachable");
    stranded.get("stan").to_string()
}

/// A sale during which the card is pulled as soon as the host has sent its approval. Returns the
/// console mark and the event that ended the sale.
pub fn pull_card_after_approval(lab: &Lab) -> (usize, Event) {
    let mut feed = lab.host.watch(0).unwrap();
    let mark = start_sale(lab);
    feed.wait_for(WAIT, |e| is(e, Direction::Out, "0210")).unwrap();
    lab.remove_card().unwrap();
    (mark, lab.wait_event(mark, WAIT, &OUTCOMES).unwrap())
}

/// Cuts the terminal's power, restores it, and waits until it has done what it does at boot.
pub fn power_cycle(lab: &mut Lab) {
    lab.power_off();
    lab.power_on().unwrap();
    lab.status().unwrap();
}

/// The host holds nothing for sale `stan`, and the oracle finds no violation at all.
pub fn assert_nothing_charged(lab: &Lab, stan: &str) {
    let (ledger, verdict) = judge(lab);
    assert_eq!(ledger.net(&sale_key(stan)), 0, "net for sale {stan}");
    assert_passed(&verdict);
}
