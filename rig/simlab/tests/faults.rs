//! More domain.md §4 rows on the simulated lab that involve no reversal: a card pulled before the
//! request (C1) and a void of an already voided sale (V3). The reversal rows are in
//! `common/reversals.rs`.

mod common;

use common::*;

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
