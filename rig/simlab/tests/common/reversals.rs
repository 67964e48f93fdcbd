//! The reversal rows of domain.md §4 (P3, P4, P7, P9, P12, P13, P14, P16, W2, W4, C2, C3, V7),
//! each a function of the lab [`Setup`], so the same bodies run straight against the simulator
//! (`scenarios.rs`) and through the proxy (`proxy_mode.rs`). The knobs are set on `lab.host`,
//! which in the proxy setup is the proxy: the simulator behind it stays honest, and the oracle
//! judges from the proxy's journal and observed ledger.

use std::time::Duration;

use posrig_host::Direction;
use posrig_simlab::{Event, Lab};
use serde_json::json;

use super::*;

pub fn p3_lost_reply_is_reversed_with_98_and_nothing_is_charged(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
    lab.host
        .add_rule(json!({"kind": "sale", "action": "drop_reply"}))
        .unwrap();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "reversal_done", "{:?}", lab.events_since(mark));
    let names: Vec<String> = lab.events_since(mark).into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"timeout".to_string()));
    assert!(
        !names.contains(&"approved".to_string()),
        "no approval receipt: {names:?}"
    );

    let journal = lab.host.journal().unwrap();
    let sale_in = journal.iter().find(|e| e.mti.as_deref() == Some("0200")).unwrap();
    let reversal = journal
        .iter()
        .find(|e| e.mti.as_deref() == Some("0400"))
        .expect("a 0400");
    assert!(reversal.seq > sale_in.seq);
    assert_eq!(reversal.stan, sale_in.stan, "the 0400 repeats the original STAN");
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("98"));
    for field in [3u8, 4, 41, 42, 60] {
        assert_eq!(
            reversal.fields.get(&field),
            sale_in.fields.get(&field),
            "0400 repeats field {field}"
        );
    }
    assert!(!reversal.fields.contains_key(&35), "no track data in a reversal");
    assert!(!reversal.fields.contains_key(&38), "no auth code was received");
    let stan = sale_in.stan.clone().unwrap();
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&stan)), 0);
    assert_eq!(ledger.entry(&sale_key(&stan)).unwrap().reversals_applied, 1);
    assert_passed(&verdict);
}

pub fn p7_bad_mac_on_approval_reverses_with_a0_and_the_auth_code_after_signing_on_again(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "corrupt_mac"}))
        .unwrap();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "reversal_done", "{:?}", lab.events_since(mark));
    assert!(lab.events_since(mark).iter().any(|e| e.name == "mac_error"));

    let journal = lab.host.journal().unwrap();
    let reply = journal.iter().find(|e| e.mti.as_deref() == Some("0210")).unwrap();
    let reversal = journal
        .iter()
        .find(|e| e.mti.as_deref() == Some("0400"))
        .expect("a 0400");
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("A0"));
    assert_eq!(
        reversal.fields.get(&38),
        reply.fields.get(&38),
        "the 0400 keeps the auth code"
    );
    let signons: Vec<u64> = journal
        .iter()
        .filter(|e| e.direction == Direction::In && e.mti.as_deref() == Some("0800"))
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        signons.len(),
        2,
        "signed on at boot and again after the MAC error"
    );
    assert!(reply.seq < signons[1] && signons[1] < reversal.seq);
    assert_nothing_charged(&lab, reversal.stan.as_deref().unwrap());
}

pub fn p14_pending_reversal_survives_a_power_cycle_and_goes_before_the_next_sale(setup: Setup) {
    let mut lab = lab_in(setup, &[], &[]);
    let old_stan = strand_a_reversal(&lab);

    lab.power_off();
    lab.host.set_settings(json!({"maintenance": false})).unwrap();
    let boot = lab.console.mark();
    lab.power_on().unwrap();
    let nvm = lab.wait_event(boot, WAIT, &["reversal_pending"]).unwrap();
    assert_eq!(nvm.get("stan"), old_stan, "still pending after boot");
    let (_, outcome) = sale(&lab);
    assert_eq!(outcome.name, "approved");
    let new_stan = outcome.get("stan").to_string();
    assert!(
        new_stan > old_stan,
        "STAN {new_stan} after reboot exceeds {old_stan}"
    );

    let journal = lab.host.journal().unwrap();
    let order: Vec<_> = messages(&journal)
        .into_iter()
        .filter(|(d, mti, _)| *d == Direction::In && (mti == "0200" || mti == "0400"))
        .collect();
    assert_eq!(
        order,
        vec![
            (Direction::In, "0200".to_string(), old_stan.clone()),
            (Direction::In, "0400".to_string(), old_stan.clone()),
            (Direction::In, "0200".to_string(), new_stan.clone()),
        ]
    );
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&old_stan)), 0);
    assert_eq!(ledger.net(&sale_key(&new_stan)), AMOUNT as i64);
    assert_passed(&verdict);
}

/// W2: the power is cut the moment the host receives the 0200; the host still approves it.
/// Returns the sale's STAN.
fn cut_power_when_the_request_arrives(lab: &mut Lab) -> String {
    let mut feed = lab.host.watch(0).unwrap();
    start_sale(lab);
    let request = feed
        .wait_for(WAIT, |e| {
            e.direction == Direction::In && e.mti.as_deref() == Some("0200")
        })
        .unwrap();
    // Anything pending at boot is sent at boot (policy reversal_at_boot).
    power_cycle(lab);
    request.stan.unwrap()
}

/// Flash writes slow enough that the cut lands inside them on a loaded machine.
const SLOW_FLASH: &str = "timing.flash_write_ms=60";

pub fn w2_power_cut_right_after_the_request_left_is_reversed_after_boot(setup: Setup) {
    let mut lab = lab_in(setup, &[], &[SLOW_FLASH]);
    let stan = cut_power_when_the_request_arrives(&mut lab);
    let journal = lab.host.journal().unwrap();
    let reversal = journal
        .iter()
        .find(|e| e.direction == Direction::In && e.mti.as_deref() == Some("0400"))
        .expect("the write-ahead reversal is sent after boot");
    assert_eq!(reversal.stan.as_deref(), Some(stan.as_str()));
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("98"));
    let (ledger, verdict) = judge(&lab);
    assert_eq!(
        ledger.entry(&sale_key(&stan)).unwrap().response_code,
        "00",
        "the host approved"
    );
    assert_eq!(ledger.net(&sale_key(&stan)), 0);
    assert_passed(&verdict);
}

pub fn w2_with_reversal_after_send_the_cut_leaves_a_double_charge(setup: Setup) {
    let mut lab = lab_in(setup, &["reversal_after_send"], &[SLOW_FLASH]);
    let stan = cut_power_when_the_request_arrives(&mut lab);
    let journal = lab.host.journal().unwrap();
    assert!(
        journal.iter().all(|e| e.mti.as_deref() != Some("0400")),
        "the reversal was lost"
    );
    let (ledger, verdict) = judge(&lab);
    assert_eq!(
        ledger.net(&sale_key(&stan)),
        AMOUNT as i64,
        "the cardholder is charged"
    );
    assert_eq!(
        broken(&verdict),
        vec![(1, stan.clone()), (2, stan.clone()), (6, stan)],
        "{verdict:#?}"
    );
}

/// W4: the power is cut after the 0210 00 arrived, while the card is still computing the 2nd
/// GENERATE AC, before the terminal commits. Returns the sale's STAN.
fn cut_power_before_completion(lab: &mut Lab) -> String {
    let mut feed = lab.host.watch(0).unwrap();
    start_sale(lab);
    let reply = feed
        .wait_for(WAIT, |e| {
            e.direction == Direction::Out && e.mti.as_deref() == Some("0210")
        })
        .unwrap();
    // Reply flush ends ≈60 ms after the 0210, the 2nd GENERATE AC ≈150 ms later, the commit ≈60 ms
    // after that: 120 ms after the reply lands between the first flush and the commit.
    std::thread::sleep(Duration::from_millis(120));
    power_cycle(lab);
    reply.stan.unwrap()
}

const SLOW_CARD: &str = "timing.second_generate_ac_ms=150";

pub fn w4_power_cut_before_completion_is_reversed_with_96_and_the_auth_code(setup: Setup) {
    let mut lab = lab_in(setup, &[], &[SLOW_FLASH, SLOW_CARD]);
    let stan = cut_power_before_completion(&mut lab);
    let journal = lab.host.journal().unwrap();
    let reply = journal.iter().find(|e| e.mti.as_deref() == Some("0210")).unwrap();
    let reversal = journal
        .iter()
        .find(|e| e.direction == Direction::In && e.mti.as_deref() == Some("0400"))
        .expect("a reversal after boot");
    assert_eq!(reversal.fields.get(&39).map(String::as_str), Some("96"));
    assert_eq!(reversal.fields.get(&38), reply.fields.get(&38));
    let events: Vec<String> = lab.events_since(0).into_iter().map(|e| e.name).collect();
    assert!(!events.contains(&"receipt".to_string()), "no receipt: {events:?}");
    assert_nothing_charged(&lab, &stan);
}

pub fn w4_with_clear_reversal_before_log_the_cut_leaves_approved_at_host_and_nothing_on_the_terminal(
    setup: Setup,
) {
    let mut lab = lab_in(setup, &["clear_reversal_before_log"], &[SLOW_FLASH, SLOW_CARD]);
    let stan = cut_power_before_completion(&mut lab);
    let journal = lab.host.journal().unwrap();
    assert!(
        journal.iter().all(|e| e.mti.as_deref() != Some("0400")),
        "nothing to reverse survived"
    );
    let (ledger, verdict) = judge(&lab);
    assert_eq!(ledger.net(&sale_key(&stan)), AMOUNT as i64);
    assert_eq!(
        broken(&verdict),
        vec![(1, stan.clone()), (2, stan.clone()), (6, stan)],
        "{verdict:#?}"
    );
}

pub fn c2_card_pulled_after_the_request_is_reversed_with_96(setup: Setup) {
    let lab = lab_in(setup, &[], &["timing.second_generate_ac_ms=300"]);
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

pub fn c3_card_answering_aac_is_reversed_with_96_and_its_icc_data(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
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

pub fn p4_late_reply_is_ignored_and_the_sale_reversed(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "delay", "ms": 1500}))
        .unwrap();
    let (mark, outcome) = sale(&lab);
    assert_eq!(outcome.name, "reversal_done");
    assert!(!lab.events_since(mark).iter().any(|e| e.name == "approved"));
    assert_nothing_charged(&lab, outcome.get("stan"));
}

pub fn p9_reply_with_a_wrong_stan_tid_or_amount_is_reversed_with_06(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
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

pub fn p12_reversal_refused_n_times_is_dropped_and_reported(setup: Setup) {
    let lab = lab_in(setup, &[], &["policy.reversal_attempts=2"]);
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

pub fn p12_keep_and_block_refuses_the_next_sale(setup: Setup) {
    let lab = lab_in(
        setup,
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

pub fn p13_no_sale_goes_online_while_a_reversal_is_pending_and_the_host_unreachable(setup: Setup) {
    let lab = lab_in(setup, &[], &["policy.reversal_trigger=\"lazy\""]);
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

pub fn v7_lost_void_reply_is_reversed_and_the_sale_stands(setup: Setup) {
    let lab = lab_in(setup, &[], &[]);
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

pub fn p16_settlement_sends_the_pending_reversal_first_and_balances(setup: Setup) {
    let lab = lab_in(
        setup,
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
