//! The acquirer host over real TCP, acting as a terminal: default processing, every fault knob of
//! domain.md §6, reversal and void bookkeeping with and without idempotency, settlement,
//! maintenance, the wire journal and the JSON control port. What a proxy must do alike runs twice
//! (see `in_both_setups!` at the end): against the simulator and through a proxy in front of it.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use posrig_host::{control, monotonic_ns, Action, AlteredField, Direction, Kind, Settings};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::*;

// ---------------------------------------------------------------- default behaviour

async fn a_sale_is_approved_signed_and_booked(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let (_, reply) = approved_sale(&mut terminal, "000001").await;
    let m = &reply.message;
    assert_eq!(m.mti, "0210");
    assert_eq!(m.tpdu, REPLY_TPDU, "TPDU destination and source swapped");
    assert_eq!(m.header, HEADER, "header echoed");
    assert_eq!(
        (reply.text(11), reply.text(41), reply.text(4)),
        ("000001", TID, "000000012345")
    );
    assert_eq!(reply.text(37).len(), 12);
    assert_eq!(reply.text(38).len(), 6);
    assert_eq!(terminal.mac_ok(&reply), Some(true));
    assert_eq!(rig.net("000001"), AMOUNT as i64);
    let entry = rig.entry("000001");
    assert!(entry.approved());
    assert_eq!(
        (entry.rrn.as_str(), entry.auth_code.as_str()),
        (reply.text(37), reply.text(38))
    );
}

async fn sign_ons_are_answered_without_mac_and_counted(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    for n in 1..=2 {
        let reply = terminal.exchange(&signon(&stan(n))).await;
        assert_eq!((reply.message.mti.as_str(), reply.code()), ("0810", "00"));
        assert_eq!(terminal.mac_ok(&reply), None, "sign-on carries no MAC");
        assert_eq!(rig.ledger().signons.get(TID), Some(&n));
    }
}

async fn a_request_with_a_bad_or_missing_mac_is_answered_a0_and_books_nothing(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let mut body = rig
        .codec
        .encode_signed(&mut sale("000001", AMOUNT), &rig.key)
        .unwrap();
    *body.last_mut().unwrap() ^= 0xFF;
    terminal.send_body(body).await;
    let reply = terminal.reply().await;
    assert_eq!(reply.code(), "A0");
    assert_eq!(
        terminal.mac_ok(&reply),
        Some(true),
        "the A0 reply itself is signed"
    );
    let unsigned = rig.codec.encode(&sale("000002", AMOUNT)).unwrap();
    terminal.send_body(unsigned).await;
    assert_eq!(terminal.reply().await.code(), "A0");
    let ledger = rig.ledger();
    assert!(ledger.entries.is_empty(), "booked: {:?}", ledger.entries);
    assert_no_money(&rig);
}

async fn a_stan_reused_in_the_batch_is_refused_94(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    let reply = terminal.exchange(&sale("000001", 999)).await;
    assert_eq!(reply.code(), "94");
    assert!(!reply.message.has(38), "no auth code on a refusal");
    assert_eq!(rig.net("000001"), AMOUNT as i64);
    assert_eq!(
        rig.entry("000001").amount,
        AMOUNT,
        "the first sale stays as it was"
    );
    assert_eq!(rig.ledger().duplicate_stans, vec![key("000001")]);
}

// ---------------------------------------------------------------- response knobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_declines_a_sale_without_moving_money() {
    let (rig, mut terminal) = every_sale_meets(Setup::Simulator, Action::Respond { code: "51".into() }).await;
    let reply = terminal.exchange(&sale("000001", AMOUNT)).await;
    assert_eq!(reply.code(), "51");
    assert!(!reply.message.has(37) && !reply.message.has(38));
    assert_eq!(terminal.mac_ok(&reply), Some(true));
    assert_eq!(rig.entry("000001").response_code, "51");
    assert_no_money(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_on_reversals_answers_the_0400_with_the_rule_code() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    for (n, code) in (1..).zip(["12", "25", "96"]) {
        let (sale, _) = approved_sale(&mut terminal, &stan(n)).await;
        rig.rule(
            Kind::Reversal,
            Some(&stan(n)),
            None,
            Action::Respond { code: code.into() },
        );
        let reply = terminal.exchange(&reversal(&sale, "98")).await;
        assert_eq!((reply.message.mti.as_str(), reply.code()), ("0410", code));
        assert_eq!(
            rig.net(&stan(n)),
            AMOUNT as i64,
            "a refused reversal leaves the sale standing"
        );
        assert_eq!(rig.entry(&stan(n)).reversal_requests, 1);
    }
}

// ---------------------------------------------------------------- delivery knobs

async fn drop_reply_books_the_sale_but_sends_nothing(setup: Setup) {
    let rig = unanswered_sale(setup, Action::DropReply).await;
    assert!(rig.entry("000001").approved());
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

async fn drop_request_neither_books_nor_answers(setup: Setup) {
    let rig = unanswered_sale(setup, Action::DropRequest).await;
    assert!(rig.ledger().entry(&key("000001")).is_none());
    assert_no_money(&rig);
}

async fn delay_holds_the_reply_back_at_least_the_given_time(setup: Setup) {
    let (rig, mut terminal) = every_sale_meets(setup, Action::Delay { ms: 200 }).await;
    let sent = Instant::now();
    let (_, reply) = approved_sale(&mut terminal, "000001").await;
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "reply after {:?}",
        sent.elapsed()
    );
    assert_eq!(terminal.mac_ok(&reply), Some(true));
    let request = rig.processed("0200", "000001").await;
    let journal = rig
        .journal_when(|j| j.iter().any(|e| is_message(e, Direction::Out, "0210")))
        .await;
    let sent_at = journal
        .iter()
        .find(|e| is_message(e, Direction::Out, "0210"))
        .unwrap()
        .t_ns;
    assert!(
        sent_at - request.t_ns >= 200_000_000,
        "journalled {} ns apart",
        sent_at - request.t_ns
    );
}

async fn duplicate_sends_two_identical_replies_for_one_booking(setup: Setup) {
    let (rig, mut terminal) = every_sale_meets(setup, Action::Duplicate).await;
    let (_, first) = approved_sale(&mut terminal, "000001").await;
    let second = terminal.reply().await;
    assert_eq!(first.body, second.body);
    terminal.assert_silent().await;
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

async fn corrupt_mac_spoils_the_reply_mac_only(setup: Setup) {
    let (rig, mut terminal) = every_sale_meets(setup, Action::CorruptMac).await;
    let (_, reply) = approved_sale(&mut terminal, "000001").await;
    assert_eq!(terminal.mac_ok(&reply), Some(false));
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

async fn alter_changes_the_chosen_reply_field_and_keeps_the_others(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let cases = [
        (AlteredField::Stan, 11),
        (AlteredField::Tid, 41),
        (AlteredField::Amount, 4),
    ];
    for (n, (field, number)) in (1..).zip(cases) {
        rig.rule(Kind::Sale, Some(&stan(n)), None, Action::Alter { field });
        let request = sale(&stan(n), AMOUNT);
        let reply = terminal.exchange(&request).await;
        for echoed in [4, 11, 41] {
            let (sent, got) = (request.text(echoed), reply.message.text(echoed));
            assert_eq!(
                sent != got,
                echoed == number,
                "{field:?}: field {echoed} {sent:?} → {got:?}"
            );
        }
        assert_eq!(terminal.mac_ok(&reply), Some(true), "signed after the change");
    }
}

async fn close_writes_the_first_bytes_of_the_reply_then_ends_the_connection(setup: Setup) {
    let (rig, mut terminal) = every_sale_meets(setup, Action::Close { after_bytes: 7 }).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    ended.expect("a clean close");
    assert_eq!(received.len(), 7, "length prefix and TPDU only: {received:02X?}");
    assert_eq!(received[2..], REPLY_TPDU);
    assert_eq!(rig.net("000001"), AMOUNT as i64, "processed before the cut");
}

async fn reset_ends_the_connection_without_a_reply(setup: Setup) {
    let (rig, mut terminal) = every_sale_meets(setup, Action::Reset { after_bytes: 0 }).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    assert!(received.is_empty(), "no reply bytes expected: {received:02X?}");
    if let Err(e) = ended {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(rig.net("000001"), AMOUNT as i64, "processed before the reset");
}

// ---------------------------------------------------------------- rule matching

async fn rules_match_by_stan_and_kind_and_retire_after_their_count(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    rig.rule(
        Kind::Sale,
        Some("000002"),
        None,
        Action::Respond { code: "05".into() },
    );
    rig.rule(Kind::Signon, None, Some(1), Action::Respond { code: "96".into() });
    rig.rule(
        Kind::Reversal,
        None,
        Some(2),
        Action::Respond { code: "96".into() },
    );
    let mut terminal = rig.terminal().await;
    let (first, _) = approved_sale(&mut terminal, "000001").await;
    assert_eq!(
        terminal.exchange(&sale("000002", AMOUNT)).await.code(),
        "05",
        "STAN rule"
    );
    assert_eq!(
        terminal.exchange(&signon("000002")).await.code(),
        "96",
        "kind rule, not the STAN one"
    );
    assert_eq!(
        terminal.exchange(&signon("000003")).await.code(),
        "00",
        "retired after once"
    );
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            terminal
                .exchange(&reversal(&first, "98"))
                .await
                .code()
                .to_string(),
        );
    }
    assert_eq!(codes, ["96", "96", "00"]);
    assert_eq!(rig.net("000001"), 0);
    let remaining: Vec<_> = rig.host.rules().iter().map(|r| r.times).collect();
    assert_eq!(remaining, [None, Some(0), Some(0)]);
    assert_eq!(
        rig.ledger().signons.get(TID),
        Some(&1),
        "the refused sign-on is not counted"
    );
}

// ---------------------------------------------------------------- reversals

async fn a_reversal_returns_the_money_once_even_when_repeated(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let (sale, _) = approved_sale(&mut terminal, "000001").await;
    for requests in 1..=2 {
        let reply = terminal.exchange(&reversal(&sale, "98")).await;
        assert_eq!((reply.message.mti.as_str(), reply.code()), ("0410", "00"));
        assert_eq!(terminal.mac_ok(&reply), Some(true));
        assert_eq!(rig.net("000001"), 0);
        let entry = rig.entry("000001");
        assert_eq!((entry.reversal_requests, entry.reversals_applied), (requests, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotency_a_repeated_reversal_applies_twice() {
    let rig = Rig::with(Settings {
        idempotent_reversals: false,
        ..Settings::default()
    })
    .await;
    let mut terminal = rig.terminal().await;
    let (sale, _) = approved_sale(&mut terminal, "000001").await;
    for _ in 0..2 {
        assert_eq!(terminal.exchange(&reversal(&sale, "98")).await.code(), "00");
    }
    assert_eq!(
        rig.net("000001"),
        -(AMOUNT as i64),
        "the double credit a suite must catch"
    );
    assert_eq!(rig.entry("000001").reversals_applied, 2);
}

async fn a_reversal_of_an_unknown_original_is_answered_25(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let reply = terminal.exchange(&reversal(&sale("000009", AMOUNT), "98")).await;
    assert_eq!(reply.code(), "25");
    assert_eq!(rig.ledger().orphan_reversals, vec![key("000009")]);
    assert_no_money(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_of_a_declined_sale_moves_nothing() {
    let rig = Rig::start().await;
    rig.rule(Kind::Sale, None, Some(1), Action::Respond { code: "55".into() });
    let mut terminal = rig.terminal().await;
    let sale = sale("000001", AMOUNT);
    assert_eq!(terminal.exchange(&sale).await.code(), "55");
    assert_eq!(terminal.exchange(&reversal(&sale, "06")).await.code(), "00");
    let entry = rig.entry("000001");
    assert_eq!((entry.reversal_requests, entry.reversals_applied), (1, 0));
    assert_no_money(&rig);
}

// ---------------------------------------------------------------- voids

async fn a_void_of_an_approved_sale_cancels_it(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let (_, sale_reply) = approved_sale(&mut terminal, "000001").await;
    let reply = terminal
        .exchange(&void("000002", &Original::of(&sale_reply)))
        .await;
    assert_eq!((reply.code(), reply.text(61)), ("00", "0000010000010615"));
    assert_eq!(terminal.mac_ok(&reply), Some(true));
    assert_ne!(reply.text(37), sale_reply.text(37), "a void gets its own RRN");
    assert_eq!(rig.net("000001"), 0);
    assert_eq!(rig.entry("000001").voided_by, ["000002"]);
    assert_eq!(rig.entry("000002").original, Some(key("000001")));
}

async fn a_void_of_an_unknown_sale_is_answered_25(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let reply = terminal
        .exchange(&void("000002", &Original::unknown("000001")))
        .await;
    assert_eq!(reply.code(), "25");
    assert_no_money(&rig);
}

async fn a_second_void_of_a_voided_sale_is_answered_12(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let first = voided_sale(&rig, &mut terminal, "000001", "000002").await;
    let mut again = first.clone();
    again.set(11, "000003");
    assert_eq!(terminal.exchange(&again).await.code(), "12");
    assert_eq!(rig.net("000001"), 0);
    assert_eq!(rig.entry("000001").voided_by, ["000002"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_void_applies_once_with_idempotency_and_twice_without() {
    for (idempotent_voids, net) in [(true, 0), (false, -(AMOUNT as i64))] {
        let rig = Rig::with(Settings {
            idempotent_voids,
            ..Settings::default()
        })
        .await;
        let mut terminal = rig.terminal().await;
        let request = voided_sale(&rig, &mut terminal, "000001", "000002").await;
        assert_eq!(terminal.exchange(&request).await.code(), "00");
        assert_eq!(rig.net("000001"), net, "idempotent_voids={idempotent_voids}");
    }
}

async fn a_void_for_another_amount_is_answered_64(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let (_, sale_reply) = approved_sale(&mut terminal, "000001").await;
    let wrong = Original {
        amount: AMOUNT + 1,
        ..Original::of(&sale_reply)
    };
    assert_eq!(terminal.exchange(&void("000002", &wrong)).await.code(), "64");
    assert_eq!(rig.net("000001"), AMOUNT as i64);
    assert!(rig.entry("000001").voided_by.is_empty());
}

async fn a_reversed_void_restores_the_sale(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let void = voided_sale(&rig, &mut terminal, "000001", "000002").await;
    assert_eq!(terminal.exchange(&reversal(&void, "98")).await.code(), "00");
    assert_eq!(rig.net("000001"), AMOUNT as i64);
    assert!(rig.entry("000001").voided_by.is_empty());
    assert_eq!(rig.entry("000002").reversals_applied, 1);
}

// ---------------------------------------------------------------- settlement

async fn settlement_compares_the_terminal_totals_with_the_ledger(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    let (reversed, _) = approved_sale(&mut terminal, "000002").await;
    assert_eq!(terminal.exchange(&reversal(&reversed, "98")).await.code(), "00");
    let host_totals = format!("001{AMOUNT:012}");
    for (n, terminal_totals, flag) in [(3, (1, AMOUNT), '1'), (4, (2, 2 * AMOUNT), '2')] {
        let reply = terminal.exchange(&settlement(&stan(n), terminal_totals)).await;
        assert_eq!((reply.message.mti.as_str(), reply.code()), ("0510", "00"));
        assert_eq!(reply.text(63), format!("{flag}{host_totals}"));
        assert_eq!(terminal.mac_ok(&reply), None, "settlement carries no MAC");
    }
    let balanced: Vec<_> = rig.ledger().settlements.iter().map(|s| s.balanced()).collect();
    assert_eq!(balanced, [true, false]);
}

// ---------------------------------------------------------------- maintenance

async fn maintenance_refuses_connections_until_it_ends(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let addr = rig.host.addr();
    rig.host
        .set_settings(Settings {
            maintenance: true,
            ..Settings::default()
        })
        .expect("maintenance is honoured");
    connect_until(&rig, true).await;
    rig.host.set_settings(Settings::default()).unwrap();
    connect_until(&rig, false).await;
    assert_eq!(rig.host.addr(), addr);
    approved_sale(&mut rig.terminal().await, "000001").await;
}

// ---------------------------------------------------------------- journal

async fn the_journal_records_every_message_in_order_on_the_rig_clock(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let before = monotonic_ns();
    let mut terminal = rig.terminal().await;
    terminal.exchange(&signon("000001")).await;
    let sent = terminal.send(&sale("000002", AMOUNT)).await;
    let received = terminal.reply().await;
    let journal = rig
        .journal_when(|j| j.iter().any(|e| is_message(e, Direction::Out, "0210")))
        .await;
    let after = monotonic_ns();
    let messages: Vec<_> = journal
        .iter()
        .filter(|e| e.direction != Direction::Event)
        .collect();
    let order: Vec<_> = messages
        .iter()
        .map(|e| (e.direction, e.mti.clone().unwrap()))
        .collect();
    let expected = [
        (Direction::In, "0800"),
        (Direction::Out, "0810"),
        (Direction::In, "0200"),
    ];
    let expected = expected
        .iter()
        .chain(&[(Direction::Out, "0210")])
        .map(|(d, m)| (*d, m.to_string()));
    assert_eq!(order, expected.collect::<Vec<_>>());
    assert!(
        journal.iter().enumerate().all(|(i, e)| e.seq == i as u64),
        "seq counts from 0"
    );
    assert!(
        journal.windows(2).all(|w| w[0].t_ns <= w[1].t_ns),
        "t_ns never goes back"
    );
    assert!(
        journal.iter().all(|e| (before..=after).contains(&e.t_ns)),
        "stamped on the rig's clock"
    );
    for entry in &messages {
        let raw = hex::decode(&entry.raw).expect("raw is hex");
        assert_eq!(rig.codec.decode(&raw).unwrap().mti, *entry.mti.as_ref().unwrap());
    }
    assert_eq!(hex::decode(&messages[2].raw).unwrap(), sent);
    assert_eq!(hex::decode(&messages[3].raw).unwrap(), received.body);
    assert_eq!(messages[3].fields.get(&39).map(String::as_str), Some("00"));
}

async fn watch_gives_the_backlog_then_live_entries(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    rig.journal_when(|j| j.iter().any(|e| is_message(e, Direction::Out, "0210")))
        .await;
    let (backlog, mut feed) = rig.host.watch(0);
    assert_eq!(backlog, rig.host.journal(0));
    approved_sale(&mut terminal, "000002").await;
    loop {
        let entry = tokio::time::timeout(PATIENCE, feed.recv())
            .await
            .expect("a live entry")
            .unwrap();
        assert!(
            entry.seq >= backlog.len() as u64,
            "live entries follow the backlog"
        );
        if entry.stan.as_deref() == Some("000002") {
            assert!(is_message(&entry, Direction::In, "0200"), "{entry:?}");
            break;
        }
    }
}

// ---------------------------------------------------------------- control port

/// A client of the JSON control port.
struct ControlClient {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl ControlClient {
    async fn connect(rig: &Rig) -> ControlClient {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(control::serve(listener, rig.host.clone()));
        let (reader, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        ControlClient {
            lines: BufReader::new(reader).lines(),
            writer,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("an answer");
        serde_json::from_str(&line.unwrap().expect("a line")).expect("JSON")
    }

    async fn ask(&mut self, request: Value) -> Value {
        self.send(&request.to_string()).await;
        let answer = self.next().await;
        assert_eq!(answer["ok"], true, "{request} → {answer}");
        answer["result"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_port_changes_rules_and_reports_the_ledger() {
    let rig = Rig::start().await;
    let mut control = ControlClient::connect(&rig).await;
    let rule = json!({"kind": "sale", "stan": "000002", "times": 1, "action": "respond", "code": "51"});
    let rules = control.ask(json!({"op": "add_rule", "rule": rule})).await;
    assert_eq!(rules[0]["code"], "51");
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    assert_eq!(terminal.exchange(&sale("000002", AMOUNT)).await.code(), "51");
    let ledger = control.ask(json!({"op": "ledger"})).await;
    let entries = &ledger["entries"];
    assert_eq!(entries[format!("{TID}/{BATCH}/000001")]["response_code"], "00");
    assert_eq!(entries[format!("{TID}/{BATCH}/000002")]["response_code"], "51");
    assert_eq!(ledger["postings"].as_array().map(Vec::len), Some(1));
    control
        .ask(json!({"op": "settings", "settings": {"idempotent_reversals": false}}))
        .await;
    let expected = Settings {
        idempotent_reversals: false,
        ..Settings::default()
    };
    assert_eq!(rig.host.settings(), expected, "absent keys take their defaults");
    let status = control.ask(json!({"op": "status"})).await;
    assert_eq!(status["listen"], rig.host.addr().to_string());
    assert_eq!(status["rules"][0]["times"], 0, "the rule was used up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_port_names_what_is_wrong_with_a_request() {
    let rig = Rig::start().await;
    let mut control = ControlClient::connect(&rig).await;
    for (line, problem) in [
        ("{not json", "key must be a string"),
        (r#"{"op":"explode"}"#, "unknown variant `explode`"),
        (
            r#"{"op":"add_rule","rule":{"action":"melt"}}"#,
            "unknown variant `melt`",
        ),
    ] {
        control.send(line).await;
        let answer = control.next().await;
        assert_eq!(answer["ok"], false, "{line} → {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(problem), "{line} → {error}");
    }
    assert!(rig.host.rules().is_empty(), "nothing half-applied");
    assert_eq!(
        control.ask(json!({"op": "clear_rules"})).await,
        json!([]),
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_port_streams_the_journal() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    let mut control = ControlClient::connect(&rig).await;
    control.send(r#"{"op":"watch"}"#).await;
    let first = control.next().await;
    assert_eq!(
        (first["seq"].as_u64(), first["direction"].as_str()),
        (Some(0), Some("event"))
    );
    approved_sale(&mut terminal, "000002").await;
    let mut previous = 0;
    loop {
        let entry = control.next().await;
        let seq = entry["seq"].as_u64().unwrap();
        assert_eq!(seq, previous + 1, "no gap, no repeat");
        previous = seq;
        if entry["stan"] == "000002" {
            assert_eq!(
                (entry["direction"].as_str(), entry["mti"].as_str()),
                (Some("in"), Some("0200"))
            );
            break;
        }
    }
}

// ---------------------------------------------------------------- regressions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_00_on_a_reversal_still_applies_it() {
    let rig = Rig::start().await;
    rig.rule(Kind::Reversal, None, None, Action::Respond { code: "00".into() });
    let mut terminal = rig.terminal().await;
    let (request, _) = approved_sale(&mut terminal, "000001").await;
    assert_eq!(terminal.exchange(&reversal(&request, "98")).await.code(), "00");
    assert_eq!(rig.net("000001"), 0);
    assert_eq!(rig.entry("000001").reversals_applied, 1);
}

async fn requests_written_together_are_decided_in_arrival_order(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let stans: Vec<String> = (1..=60).map(stan).collect();
    let mut burst = Vec::new();
    for stan in &stans {
        let request = sale(stan, AMOUNT);
        for mut message in [request.clone(), reversal(&request, "98")] {
            let body = rig.codec.encode_signed(&mut message, &terminal.key).unwrap();
            burst.extend(rig.codec.frame(body).unwrap());
        }
    }
    terminal.stream.write_all(&burst).await.unwrap();
    for _ in 0..stans.len() * 2 {
        assert_eq!(terminal.reply().await.code(), "00");
    }
    let ledger = rig.ledger();
    assert!(
        ledger.orphan_reversals.is_empty(),
        "{:?}",
        ledger.orphan_reversals
    );
    assert!(stans.iter().all(|s| rig.net(s) == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_stream_goes_on_after_a_reset() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000001").await;
    let mut control = ControlClient::connect(&rig).await;
    control.send(r#"{"op":"watch"}"#).await;
    control.next().await;
    rig.host.reset();
    let mut terminal = rig.terminal().await;
    approved_sale(&mut terminal, "000009").await;
    loop {
        let entry = control.next().await;
        if entry["stan"] == "000009" {
            break;
        }
    }
}

async fn a_reversed_sale_cannot_be_voided_and_a_voided_sale_cannot_be_reversed(setup: Setup) {
    let rig = Rig::start_in(setup).await;
    let mut terminal = rig.terminal().await;
    let (request, reply) = approved_sale(&mut terminal, "000001").await;
    assert_eq!(terminal.exchange(&reversal(&request, "98")).await.code(), "00");
    let refused = terminal.exchange(&void("000002", &Original::of(&reply))).await;
    assert_eq!(refused.code(), "12");
    assert_eq!(rig.net("000001"), 0);

    voided_sale(&rig, &mut terminal, "000003", "000004").await;
    terminal.exchange(&reversal(&sale("000003", AMOUNT), "98")).await;
    assert_eq!(rig.net("000003"), 0, "never below zero");
}

/// Runs each named `async fn(Setup)` as a test against the simulator (`simulator::NAME`) and
/// through a proxy in front of one, with the knobs at the proxy (`proxy::NAME`): the proxy must
/// behave as the simulator does, and its observed ledger must agree with the simulator's books.
macro_rules! in_both_setups {
    ($($name:ident),* $(,)?) => {
        mod simulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Setup::Simulator).await
                }
            )*
        }
        mod proxy {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Setup::Proxy).await
                }
            )*
        }
    };
}

in_both_setups!(
    a_sale_is_approved_signed_and_booked,
    sign_ons_are_answered_without_mac_and_counted,
    a_request_with_a_bad_or_missing_mac_is_answered_a0_and_books_nothing,
    a_stan_reused_in_the_batch_is_refused_94,
    drop_reply_books_the_sale_but_sends_nothing,
    drop_request_neither_books_nor_answers,
    delay_holds_the_reply_back_at_least_the_given_time,
    duplicate_sends_two_identical_replies_for_one_booking,
    corrupt_mac_spoils_the_reply_mac_only,
    alter_changes_the_chosen_reply_field_and_keeps_the_others,
    close_writes_the_first_bytes_of_the_reply_then_ends_the_connection,
    reset_ends_the_connection_without_a_reply,
    rules_match_by_stan_and_kind_and_retire_after_their_count,
    a_reversal_returns_the_money_once_even_when_repeated,
    a_reversal_of_an_unknown_original_is_answered_25,
    a_void_of_an_approved_sale_cancels_it,
    a_void_of_an_unknown_sale_is_answered_25,
    a_second_void_of_a_voided_sale_is_answered_12,
    a_void_for_another_amount_is_answered_64,
    a_reversed_void_restores_the_sale,
    settlement_compares_the_terminal_totals_with_the_ledger,
    maintenance_refuses_connections_until_it_ends,
    the_journal_records_every_message_in_order_on_the_rig_clock,
    watch_gives_the_backlog_then_live_entries,
    requests_written_together_are_decided_in_arrival_order,
    a_reversed_sale_cannot_be_voided_and_a_voided_sale_cannot_be_reversed
);
