//! Each seeded `posterm` defect in a scenario built to expose it: the oracle must name the
//! invariant it breaks (the two write-ahead and atomic-completion defects are in scenarios.rs).

mod common;

use common::*;
use posrig_host::Direction;
use posrig_simlab::Lab;
use serde_json::json;

fn broken_by(lab: &Lab) -> Vec<(u8, String)> {
    broken(&judge(lab).1)
}

#[test]
fn resend_on_timeout_sends_the_same_stan_twice() {
    let lab = lab_with(&["resend_on_timeout"], &[]);
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "drop_reply"}))
        .unwrap();
    let (_, outcome) = sale(&lab);
    let stan = outcome.get("stan").to_string();
    let sales: Vec<String> = messages(&lab.host.journal().unwrap())
        .into_iter()
        .filter(|(d, mti, _)| *d == Direction::In && mti == "0200")
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(
        sales,
        vec![stan.clone(), stan.clone()],
        "rule 5: a 0200 is never re-sent"
    );
    assert!(broken_by(&lab).contains(&(4, stan)));
}

#[test]
fn stan_reset_on_boot_reuses_a_stan_of_the_batch() {
    let mut lab = lab_with(&["stan_reset_on_boot"], &[]);
    let (_, first) = sale(&lab);
    assert_eq!(first.name, "approved");
    lab.power_off();
    lab.power_on().unwrap();
    let (_, second) = sale(&lab);
    assert_eq!((second.name.as_str(), second.get("rc")), ("declined", "94"));
    assert_eq!(
        second.get("stan"),
        first.get("stan"),
        "the STAN repeated after boot"
    );
    assert!(broken_by(&lab).contains(&(4, first.get("stan").to_string())));
}

#[test]
fn no_reversal_persist_loses_the_reversal_in_a_power_cycle() {
    let mut lab = lab_with(&["no_reversal_persist"], &[]);
    let stan = strand_a_reversal(&lab);
    lab.power_off();
    lab.host.set_settings(json!({"maintenance": false})).unwrap();
    lab.power_on().unwrap();
    assert_eq!(
        broken_by(&lab),
        vec![(1, stan.clone()), (2, stan.clone()), (6, stan)]
    );
}

#[test]
fn no_reversal_on_card_removal_abandons_an_approved_sale() {
    let lab = lab_with(
        &["no_reversal_on_card_removal"],
        &["timing.second_generate_ac_ms=300"],
    );
    let (_, outcome) = pull_card_after_approval(&lab);
    assert_eq!(outcome.name, "terminated");
    let stan = outcome.get("stan").to_string();
    assert_eq!(
        broken_by(&lab),
        vec![(1, stan.clone()), (2, stan.clone()), (6, stan)]
    );
}

#[test]
fn void_unknown_sent_reaches_the_host_and_is_answered_25() {
    let lab = lab_with(&["void_unknown_sent"], &[]);
    let mark = lab.type_command("void", &[("stan", "999999".into())]).unwrap();
    let outcome = lab
        .wait_event(mark, WAIT, &["refused", "voided", "declined"])
        .unwrap();
    assert_eq!((outcome.name.as_str(), outcome.get("rc")), ("declined", "25"));
    let void = find(&lab.host.journal().unwrap(), Direction::In, "0200");
    assert_eq!(
        void.fields.get(&3).map(String::as_str),
        Some("200000"),
        "a void was sent for nothing"
    );
    assert_eq!(broken_by(&lab), vec![(5, void.stan.clone().unwrap())]);
}
