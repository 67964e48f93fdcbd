//! domain.md §4 scenarios on the simulated lab: the host and `posterm` as real processes, a PTY
//! console, TCP, an NVM folder, and SIGKILL as the power cut. Each test asserts the terminal's
//! events, the host's wire journal and ledger, and the money invariants.

use std::time::Duration;

use posrig_host::Direction;
use posrig_simlab::Lab;
use serde_json::json;

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
fn p3_lost_reply_is_reversed_with_98_and_nothing_is_charged() {
    let lab = lab();
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
fn p7_bad_mac_on_approval_reverses_with_a0_and_the_auth_code_after_signing_on_again() {
    let lab = lab();
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

#[test]
fn p14_pending_reversal_survives_a_power_cycle_and_goes_before_the_next_sale() {
    let mut lab = lab();
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
    let before = lab.host.journal().unwrap().len();
    let mark = lab.type_command("void", &[("stan", "999999".into())]).unwrap();
    let refused = lab
        .wait_event(mark, WAIT, &["refused", "voided", "declined"])
        .unwrap();
    assert_eq!(refused.name, "refused");
    assert_eq!(refused.get("why"), "unknown trace");
    lab.status().unwrap();
    assert_eq!(
        lab.host.journal().unwrap().len(),
        before,
        "nothing reached the host"
    );
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

#[test]
fn w2_power_cut_right_after_the_request_left_is_reversed_after_boot() {
    let mut lab = lab_with(&[], &[SLOW_FLASH]);
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

#[test]
fn w2_with_reversal_after_send_the_cut_leaves_a_double_charge() {
    let mut lab = lab_with(&["reversal_after_send"], &[SLOW_FLASH]);
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

#[test]
fn w4_power_cut_before_completion_is_reversed_with_96_and_the_auth_code() {
    let mut lab = lab_with(&[], &[SLOW_FLASH, SLOW_CARD]);
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

#[test]
fn w4_with_clear_reversal_before_log_the_cut_leaves_approved_at_host_and_nothing_on_the_terminal() {
    let mut lab = lab_with(&["clear_reversal_before_log"], &[SLOW_FLASH, SLOW_CARD]);
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
