//! The lab with an `acqhost --upstream` proxy between `posterm` and the host simulator: the same
//! reversal scenarios as the direct setup (`common/reversals.rs`), with the knobs applied at the
//! proxy, the simulator behind it left honest, and the oracle judging from the proxy's journal and
//! observed ledger; and a purchase showing that the proxy relays the bytes unchanged and observes
//! what the simulator booked.

use posrig_host::Direction;

#[macro_use]
mod common;

use common::*;

reversal_scenarios!(Setup::Proxy);

#[test]
fn a_purchase_passes_the_proxy_unchanged_and_its_ledger_matches_the_real_hosts() {
    let lab = lab_in(Setup::Proxy, &[], &[]);
    let (_, outcome) = sale(&lab);
    assert_eq!(outcome.name, "approved");
    let stan = outcome.get("stan").to_string();
    let upstream = lab.upstream.as_ref().expect("the simulator behind the proxy");
    let raw = |journal: &[posrig_host::JournalEntry]| -> Vec<(Direction, String, String)> {
        journal
            .iter()
            .filter(|e| e.direction != Direction::Event)
            .map(|e| (e.direction, e.mti.clone().unwrap_or_default(), e.raw.clone()))
            .collect()
    };
    let proxied = raw(&lab.host.journal().unwrap());
    assert_eq!(
        proxied,
        raw(&upstream.journal().unwrap()),
        "byte for byte, both ways"
    );
    let mtis: Vec<&str> = proxied.iter().map(|(_, mti, _)| mti.as_str()).collect();
    assert_eq!(mtis, ["0800", "0810", "0200", "0210"]);

    let (observed, verdict) = judge(&lab);
    let booked = upstream.ledger().unwrap();
    assert_eq!(observed.net(&sale_key(&stan)), AMOUNT as i64);
    assert_eq!(observed.net(&sale_key(&stan)), booked.net(&sale_key(&stan)));
    let (seen, real) = (
        observed.entry(&sale_key(&stan)).unwrap(),
        booked.entry(&sale_key(&stan)).unwrap(),
    );
    assert_eq!((&seen.rrn, &seen.auth_code), (&real.rrn, &real.auth_code));
    assert_passed(&verdict);
}
