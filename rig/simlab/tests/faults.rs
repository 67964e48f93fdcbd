//! More domain.md §4 rows on the simulated lab: card handling (C1, C2, C3), replies the terminal must
//! not trust (P4, P9), reversal exhaustion under both policies (P12), a sale held back by a pending reversal (P13), voids (V3, V7) and settlement
//! with a pending reversal (P16).

mod common;

use common::*;
use posrig_host::Direction;
use posrig_simlab::{Event, Lab};
use serde_json::json;

#[test]
fn c2_card_pulled_after_the_request_is_reversed_with_96() {
    let lab = lab_with(&[], &["timing.second_generate_ac_ms=300"]);
    let (mark, outcome) = pull_card_after_approval(&lab);
    assert_eq!(outcome.name, "terminated");
    assert_eq!(outcome.get("why"), "card removed before completion");
    lab.wait_event(mark, WAIT, &["reversal_done"]).unwrap();
    let events: Vec<String> = lab.events_since(mark).into_iter().map(|e| e.name).collect();
    assert!(events.contains(&"card_removed".to_string()), "{events:?}");
    assert!(!events.contains(&"approved".to_string()), "{events:?}");
    let reversal = find(&lab.host.journal().unwrap(), Direction::In, "0400");
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("96"));
    assert_nothing_charged(&lab, outcome.get("stan"));
}

#[test]
fn c3_card_answering_aac_is_reversed_with_96_and_its_icc_data() {
    let lab = lab();
    lab.insert_card("unionpay-aac").unwrap();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "terminated");
    lab.wait_event(mark, WAIT, &["reversal_done"]).unwrap();
    assert!(lab
        .events_since(mark)
        .iter()
        .any(|e| e.name == "second_generate_ac" && e.get("result") == "AAC"));
    let reversal = find(&lab.host.journal().unwrap(), Direction::In, "0400");
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("96"));
    let icc = reversal.fields.get(&55).map(String::as_str);
    assert_eq!(
        icc,
        Some("9F360200419F270100"),
        "DE55: the reversal tags (ATC) and the AAC only"
    );
    assert!(reversal.fields.contains_key(&38));
    let (_, verdict) = judge(&lab);
    assert_passed(&verdict);
}

#[test]
fn c1_card_pulled_before_the_request_terminates_with_nothing_sent() {
    let lab = lab_with(&[], &["timing.card_read_ms=300"]);
    let mark = start_sale(&lab);
    lab.wait_event(mark, WAIT, &["card_read"]).unwrap();
    lab.remove_card().unwrap();
    let outcome = lab.wait_event(mark, WAIT, &OUTCOMES).unwrap();
    assert_eq!(outcome.name, "terminated");
    assert!(lab.host.ledger().unwrap().entries.is_empty());
}

#[test]
fn p4_late_reply_is_ignored_and_the_sale_reversed() {
    let lab = lab();
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "delay", "ms": 1500}))
        .unwrap();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "reversal_done");
    assert!(!lab.events_since(mark).iter().any(|e| e.name == "approved"));
    assert_nothing_charged(&lab, outcome.get("stan"));
}

#[test]
fn p9_reply_with_a_wrong_stan_tid_or_amount_is_reversed_with_06() {
    let lab = lab();
    for field in ["stan", "tid", "amount"] {
        lab.host
            .add_rule(json!({"kind": "sale", "times": 1, "action": "alter", "field": field}))
            .unwrap();
        let (mark, outcome) = sale(&lab);
        assert_eq!(outcome.name, "reversal_done", "{field}");
        assert!(
            lab.events_since(mark).iter().any(|e| e.name == "reply_mismatch"),
            "{field}"
        );
    }
    let journal = lab.host.journal().unwrap();
    let reasons: Vec<&str> = journal
        .iter()
        .filter(|e| e.direction == Direction::In && e.mti.as_deref() == Some("0400"))
        .map(|e| e.fields.get(&39).map_or("", String::as_str))
        .collect();
    assert_eq!(reasons, vec!["06", "06", "06"]);
    let (_, verdict) = judge(&lab);
    assert_passed(&verdict);
}

/// A sale whose reply is lost and every reversal of which the host answers 96.
fn sale_with_refused_reversals(lab: &Lab) -> (usize, Event) {
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "drop_reply"}))
        .unwrap();
    lab.host
        .add_rule(json!({"kind": "reversal", "action": "respond", "code": "96"}))
        .unwrap();
    sale(lab)
}

#[test]
fn p12_reversal_refused_n_times_is_dropped_and_reported() {
    let lab = lab_with(&[], &["policy.reversal_attempts=2"]);
    let (mark, outcome) = sale_with_refused_reversals(&lab);
    assert_eq!(outcome.name, "reversal_failed");
    assert_eq!(outcome.get("policy"), "drop_and_notify");
    let attempts = lab
        .events_since(mark)
        .iter()
        .filter(|e| e.name == "reversal_rejected")
        .count();
    assert_eq!(attempts, 2);
    let journal = lab.host.journal().unwrap();
    assert_eq!(
        messages(&journal)
            .iter()
            .filter(|(d, mti, _)| *d == Direction::In && mti == "0400")
            .count(),
        2
    );
    // Unresolved: the host holds the money, and the oracle says so.
    let (_, verdict) = judge(&lab);
    assert!(verdict.violations.is_empty(), "{verdict:#?}");
    assert_eq!(
        verdict.unresolved.len(),
        1,
        "reported as unresolved, never as a pass"
    );
}

#[test]
fn p12_keep_and_block_refuses_the_next_sale() {
    let lab = lab_with(
        &[],
        &[
            "policy.reversal_attempts=1",
            "policy.exhaustion=\"keep_and_block\"",
        ],
    );
    let (_, outcome) = sale_with_refused_reversals(&lab);
    assert_eq!(
        (outcome.name.as_str(), outcome.get("policy")),
        ("reversal_failed", "keep_and_block")
    );
    let (_, next) = sale(&lab);
    assert_eq!(next.name, "refused");
    assert!(next.get("why").contains("blocked"), "{next:?}");
}

#[test]
fn p13_no_sale_goes_online_while_a_reversal_is_pending_and_the_host_unreachable() {
    let lab = lab_with(&[], &["policy.reversal_trigger=\"lazy\""]);
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "drop_reply"}))
        .unwrap();
    let mark = start_sale(&lab);
    let pending = lab.wait_event(mark, WAIT, &["reversal_pending"]).unwrap();
    let old_stan = pending.get("stan").to_string();
    lab.host.set_settings(json!({"maintenance": true})).unwrap();
    let (_, blocked) = sale(&lab);
    assert_eq!(blocked.name, "refused", "{blocked:?}");
    assert!(blocked.get("why").contains("still pending"), "{blocked:?}");
    lab.host.set_settings(json!({"maintenance": false})).unwrap();
    let mark = start_sale(&lab);
    let next = lab
        .wait_event(mark, WAIT, &["approved", "declined", "refused", "terminated"])
        .unwrap();
    assert_eq!(next.name, "approved");
    let order: Vec<(String, String)> = messages(&lab.host.journal().unwrap())
        .into_iter()
        .filter(|(d, mti, _)| *d == Direction::In && mti != "0800")
        .map(|(_, mti, stan)| (mti, stan))
        .collect();
    let expected = [
        ("0200", old_stan.as_str()),
        ("0400", old_stan.as_str()),
        ("0200", next.get("stan")),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, s)| (m.to_string(), s.to_string()))
        .collect();
    assert_eq!(order, expected, "no 0200 before the 0400");
}

#[test]
fn v3_void_of_an_already_voided_sale_is_refused_locally() {
    let lab = lab();
    let (_, sold) = sale(&lab);
    let stan = sold.get("stan").to_string();
    for expected in ["voided", "refused"] {
        let mark = lab.type_command("void", &[("stan", stan.clone())]).unwrap();
        let outcome = lab
            .wait_event(mark, WAIT, &["voided", "refused", "declined"])
            .unwrap();
        assert_eq!(outcome.name, expected);
    }
    let ledger = lab.host.ledger().unwrap();
    assert_eq!(
        ledger.entry(&sale_key(&stan)).unwrap().voided_by.len(),
        1,
        "void applied once"
    );
}

#[test]
fn v7_lost_void_reply_is_reversed_and_the_sale_stands() {
    let lab = lab();
    let (_, sold) = sale(&lab);
    let stan = sold.get("stan").to_string();
    lab.host
        .add_rule(json!({"kind": "void", "times": 1, "action": "drop_reply"}))
        .unwrap();
    let mark = lab.type_command("void", &[("stan", stan.clone())]).unwrap();
    let outcome = lab
        .wait_event(mark, WAIT, &["voided", "refused", "declined", "reversal_done"])
        .unwrap();
    assert_eq!(outcome.name, "reversal_done");
    let reversal = find(&lab.host.journal().unwrap(), Direction::In, "0400");
    assert_eq!(reversal.fields.get(&3).map(String::as_str), Some("200000"));
    assert!(reversal.fields.contains_key(&61), "a void's reversal carries 61");
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&stan)), AMOUNT as i64, "the sale stands");
    assert_passed(&verdict);
    // ... and can be voided again.
    let mark = lab.type_command("void", &[("stan", stan.clone())]).unwrap();
    assert_eq!(
        lab.wait_event(mark, WAIT, &["voided", "refused", "declined"])
            .unwrap()
            .name,
        "voided"
    );
    assert_eq!(lab.host.ledger().unwrap().net(&sale_key(&stan)), 0);
}

#[test]
fn p16_settlement_sends_the_pending_reversal_first_and_balances() {
    let lab = lab_with(
        &[],
        &[
            "policy.reversal_trigger=\"lazy\"",
            "policy.reversal_at_boot=false",
        ],
    );
    let (_, kept) = sale(&lab);
    assert_eq!(kept.name, "approved");
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "drop_reply"}))
        .unwrap();
    let mark = start_sale(&lab);
    lab.wait_event(mark, WAIT, &["reversal_pending"]).unwrap();
    let mark = lab.type_command("settle", &[]).unwrap();
    let settled = lab
        .wait_event(mark, WAIT, &["settled", "settle_failed", "refused"])
        .unwrap();
    assert_eq!(settled.name, "settled");
    assert_eq!((settled.get("count"), settled.get("balanced")), ("1", "yes"));
    let order: Vec<String> = messages(&lab.host.journal().unwrap())
        .into_iter()
        .filter(|(d, _, _)| *d == Direction::In)
        .map(|(_, mti, _)| mti)
        .collect();
    let tail: Vec<&str> = order.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(tail, vec!["0400", "0500"]);
    assert!(lab.host.ledger().unwrap().settlements[0].balanced());
}
