//! domain.md §4 scenarios on the simulated lab: the host and `posterm` as real processes, a PTY
//! console, TCP, an NVM folder, and SIGKILL as the power cut. Each test asserts the terminal's
//! events, the host's wire journal and ledger, and the money invariants. The reversal rows live in
//! `common/reversals.rs` and run here straight against the simulator (and through the proxy in
//! `proxy_mode.rs`).

use posrig_host::Direction;
use posrig_simlab::Lab;
use serde_json::json;

#[macro_use]
mod common;

use common::*;

#[test]
fn p1_plain_purchase_is_approved_once_with_no_reversal() {
    let lab = lab();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "approved");
    let stan = outcome.get("stan").to_string();
    let receipt = lab
        .wait_event(mark, WAIT, &["receipt"])
        .expect("a receipt is printed");
    assert_eq!(
        (receipt.get("stan"), receipt.get("amount")),
        (stan.as_str(), "123.45")
    );

    let journal = lab.host.journal().unwrap();
    let wire: Vec<_> = financial(&journal)
        .iter()
        .map(|e| (e.mti.clone().unwrap(), e.fields.get(&39).cloned()))
        .collect();
    assert_eq!(
        wire,
        vec![
            ("0200".to_string(), None),
            ("0210".to_string(), Some("00".to_string()))
        ]
    );
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&stan)), AMOUNT as i64);
    assert_passed(&verdict);
}

#[test]
fn p6_host_declines_show_the_reason_and_are_never_reversed() {
    let lab = lab();
    for code in ["05", "51", "54", "55", "61", "91", "94", "96"] {
        lab.host
            .add_rule(json!({"kind": "sale", "times": 1, "action": "respond", "code": code}))
            .unwrap();
        let (_, outcome) = sale(&lab);
        assert_eq!(outcome.name, "declined", "code {code}");
        assert_eq!(outcome.get("rc"), code);
    }
    let journal = lab.host.journal().unwrap();
    assert!(
        journal.iter().all(|e| e.mti.as_deref() != Some("0400")),
        "no 0400 after a decline"
    );
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.entries.len(), 8);
    assert!(ledger.entries.values().all(|e| ledger.net(&e.key) == 0));
    assert_passed(&verdict);
}

#[test]
fn v1_void_of_an_approved_sale_cancels_it_on_both_sides() {
    let lab = lab();
    let (_, sold) = sale(&lab);
    assert_eq!(sold.name, "approved");
    let stan = sold.get("stan").to_string();
    let mark = lab.type_command("void", &[("stan", stan.clone())]).unwrap();
    let voided = lab
        .wait_event(mark, WAIT, &["voided", "declined", "refused", "reversal_done"])
        .unwrap();
    assert_eq!(voided.name, "voided");
    assert_eq!(voided.get("original"), stan);

    let journal = lab.host.journal().unwrap();
    let void = journal
        .iter()
        .find(|e| e.direction == Direction::In && e.fields.get(&3).map(String::as_str) == Some("200000"))
        .expect("a void on the wire");
    assert_eq!(
        void.fields.get(&61).map(|f| &f[6..12]),
        Some(stan.as_str()),
        "61.2 names the original"
    );
    assert!(void.fields.get(&60).unwrap().starts_with("23"));
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&stan)), 0);
    assert_eq!(
        ledger.entry(&sale_key(&stan)).unwrap().voided_by,
        vec![voided.get("stan").to_string()]
    );
    assert_passed(&verdict);
}

#[test]
fn v2_void_of_an_unknown_trace_is_refused_locally_with_nothing_sent() {
    let lab = lab();
    // Messages only: the sign-on connection's close may be journalled at any moment.
    let messages = |lab: &Lab| {
        lab.host
            .journal()
            .unwrap()
            .iter()
            .filter(|e| e.mti.is_some())
            .count()
    };
    let before = messages(&lab);
    let mark = lab.type_command("void", &[("stan", "999999".into())]).unwrap();
    let refused = lab
        .wait_event(mark, WAIT, &["refused", "voided", "declined"])
        .unwrap();
    assert_eq!(refused.name, "refused");
    assert_eq!(refused.get("why"), "unknown trace");
    lab.status().unwrap();
    assert_eq!(messages(&lab), before, "nothing reached the host");
}

reversal_scenarios!(Setup::Direct);
