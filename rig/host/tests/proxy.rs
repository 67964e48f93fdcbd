//! Proxy mode over real TCP: a terminal, the proxy, and a simulator (or a hand-written server)
//! behind it. What the proxy shares with the simulator — every knob, the journal, the ledger — runs
//! in both setups in `knobs.rs`; here is what only a proxy does: relay bytes unchanged, answer for
//! the real host, refuse what only the simulator can honour, and cope with an upstream that is
//! down, closes, garbles or answers after the terminal has gone.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use posrig_host::{control, Action, Direction, Host, HostConfig, JournalEntry, Kind, Mode, Rule, Settings};
use posrig_iso8583::{Codec, MacKey, Spec};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

use common::*;

/// The decoded messages of a journal, with their raw bytes.
fn wire(journal: &[JournalEntry]) -> Vec<(Direction, String, Vec<u8>)> {
    journal
        .iter()
        .filter(|e| e.direction != Direction::Event)
        .map(|e| {
            let mti = e.mti.clone().unwrap_or_default();
            (e.direction, mti, hex::decode(&e.raw).expect("raw is hex"))
        })
        .collect()
}

/// The first event whose note contains `text`, once the host has journalled it.
async fn event_noting(rig: &Rig, text: &str) -> JournalEntry {
    let noting = |e: &JournalEntry| e.direction == Direction::Event && e.note.contains(text);
    let journal = rig.journal_when(|j| j.iter().any(noting)).await;
    journal.into_iter().find(noting).unwrap()
}

/// Has the simulator behind the proxy meet every sale with `action`.
fn upstream_meets_every_sale(rig: &Rig, action: Action) {
    let rule = Rule {
        kind: Some(Kind::Sale),
        stan: None,
        times: None,
        action,
    };
    rig.upstream().add_rule(rule).expect("a valid rule");
}

/// A loopback address where nothing listens.
fn nobody_listening() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_exchange_is_byte_identical_and_journalled_both_ways() {
    let rig = Rig::start_in(Setup::Proxy).await;
    let mut terminal = rig.terminal().await;
    let signon_sent = terminal.send(&signon("000001")).await;
    let signon_reply = terminal.reply().await;
    let sale_sent = terminal.send(&sale("000002", AMOUNT)).await;
    let sale_reply = terminal.reply().await;
    assert_eq!(sale_reply.code(), "00");

    let expected = vec![
        (Direction::In, "0800".to_string(), signon_sent),
        (Direction::Out, "0810".to_string(), signon_reply.body),
        (Direction::In, "0200".to_string(), sale_sent),
        (Direction::Out, "0210".to_string(), sale_reply.body),
    ];
    let done = |j: &[JournalEntry]| j.iter().any(|e| is_message(e, Direction::Out, "0210"));
    let proxied = rig.journal_when(done).await;
    assert_eq!(
        wire(&proxied),
        expected,
        "the proxy journals what the terminal sent and got"
    );
    assert_eq!(
        wire(&rig.upstream().journal(0)),
        expected,
        "the upstream received and sent the very same bytes"
    );
    for reply in proxied.iter().filter(|e| e.direction == Direction::Out) {
        assert!(reply.note.starts_with("upstream reply"), "{}", reply.note);
    }
    assert_eq!(
        proxied[0].note,
        format!("connection from {}", terminal.stream.local_addr().unwrap())
    );
    assert!(proxied[1]
        .note
        .starts_with(&format!("relayed to upstream {}", rig.upstream().addr())));

    let (observed, booked) = (rig.ledger(), rig.upstream().ledger());
    let sale_key = key("000002");
    let (seen, real) = (
        observed.entry(&sale_key).unwrap(),
        booked.entry(&sale_key).unwrap(),
    );
    assert_eq!(
        (&seen.response_code, &seen.rrn, &seen.auth_code, seen.amount),
        (&real.response_code, &real.rrn, &real.auth_code, real.amount),
        "the observed entry carries the real host's references"
    );
    assert_eq!(observed.net(&sale_key), booked.net(&sale_key));
    assert_eq!(observed.signons, booked.signons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_closes_the_terminals_connection_and_says_why() {
    let upstream = nobody_listening();
    let rig = Rig::proxy_to(upstream).await;
    let mut terminal = rig.terminal().await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    assert!(received.is_empty(), "nothing answered: {received:02X?}");
    if let Err(e) = ended {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    let event = event_noting(&rig, "closing the terminal's connection").await;
    assert!(event.note.contains(&upstream.to_string()), "{}", event.note);
    assert!(rig.ledger().entries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_request_is_forwarded_byte_for_byte_and_noted() {
    let rig = Rig::start_in(Setup::Proxy).await;
    let mut terminal = rig.terminal().await;
    let garbage = vec![0x60, 0x01, 0x23, 0x04, 0x56, 0xFF, 0xEE];
    terminal.send_body(garbage.clone()).await;
    let noted = event_noting(
        &rig,
        "undecodable frame from the terminal, forwarded byte for byte",
    )
    .await;
    assert_eq!(hex::decode(&noted.raw).unwrap(), garbage);
    let deadline = Instant::now() + PATIENCE;
    let arrived = loop {
        let journal = rig.upstream().journal(0);
        if let Some(e) = journal.iter().find(|e| e.note.starts_with("undecodable frame")) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never reached the upstream: {journal:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        hex::decode(&arrived.raw).unwrap(),
        garbage,
        "the upstream got it unchanged"
    );
    approved_sale(&mut terminal, "000001").await;
}

/// A hand-written upstream that answers the first frame it receives with `answer`, as is.
async fn upstream_answering(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut body).await.unwrap();
        stream.write_all(&answer).await.unwrap();
        // Hold the connection open until the proxy closes it.
        let _ = stream.read(&mut prefix).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_reply_is_forwarded_byte_for_byte_and_noted() {
    let garbage = vec![0x00, 0x03, 0xDE, 0xAD, 0xBE];
    let rig = Rig::proxy_to(upstream_answering(garbage.clone()).await).await;
    let mut terminal = rig.terminal().await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let mut received = vec![0u8; garbage.len()];
    tokio::time::timeout(PATIENCE, terminal.stream.read_exact(&mut received))
        .await
        .expect("the garbled reply is relayed")
        .unwrap();
    assert_eq!(received, garbage);
    let noted = event_noting(
        &rig,
        "undecodable frame from the upstream, forwarded byte for byte",
    )
    .await;
    assert_eq!(noted.raw, "DEADBE");
    assert!(rig.ledger().entries.is_empty(), "nothing decodable to book");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_answers_in_the_real_hosts_place_and_respond_00_is_refused() {
    let rig = Rig::start_in(Setup::Proxy).await;
    rig.rule(
        Kind::Sale,
        Some("000001"),
        None,
        Action::Respond { code: "51".into() },
    );
    let mut terminal = rig.terminal().await;
    let reply = terminal.exchange(&sale("000001", AMOUNT)).await;
    assert_eq!((reply.message.mti.as_str(), reply.code()), ("0210", "51"));
    assert_eq!(terminal.mac_ok(&reply), Some(true), "signed with the key");
    let sent = rig
        .journal_when(|j| j.iter().any(|e| is_message(e, Direction::Out, "0210")))
        .await;
    let synthetic = sent
        .iter()
        .find(|e| is_message(e, Direction::Out, "0210"))
        .unwrap();
    assert!(synthetic.note.contains("synthetic"), "{}", synthetic.note);
    approved_sale(&mut terminal, "000002").await;
    let upstream_stans: Vec<_> = rig
        .upstream()
        .journal(0)
        .iter()
        .filter(|e| is_message(e, Direction::In, "0200"))
        .map(|e| e.stan.clone().unwrap())
        .collect();
    assert_eq!(
        upstream_stans,
        ["000002"],
        "the answered request was not forwarded"
    );
    assert!(
        rig.ledger().entry(&key("000001")).is_none(),
        "the real host booked nothing for it"
    );

    let refused = rig.host.add_rule(Rule {
        kind: Some(Kind::Sale),
        stan: None,
        times: None,
        action: Action::Respond { code: "00".into() },
    });
    assert!(refused.unwrap_err().contains("fake an approval"));
    assert_eq!(rig.host.rules().len(), 1, "nothing added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_is_the_real_hosts_and_is_refused_in_proxy_mode() {
    let rig = Rig::proxy_to(nobody_listening()).await;
    let off = Settings {
        idempotent_reversals: false,
        ..Settings::default()
    };
    let error = rig.host.set_settings(off).unwrap_err();
    assert!(error.starts_with("idempotent_reversals=false"), "{error}");
    assert_eq!(rig.host.settings(), Settings::default(), "nothing changed");
    let answer = control::answer(
        &rig.host,
        serde_json::from_value(json!({"op": "settings", "settings": {"idempotent_voids": false}})).unwrap(),
    );
    assert!(answer.unwrap_err().starts_with("idempotent_voids=false"));

    let config = HostConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        codec: Codec::new(Spec::load(SPEC).unwrap()),
        mac_key: MacKey::from_hex(MAC_KEY).unwrap(),
        settings: off,
    };
    let mode = Mode::Proxy {
        upstream: nobody_listening(),
    };
    let Err(refused) = Host::start_with_mode(config, mode).await else {
        panic!("a proxy started with settings it cannot honour");
    };
    assert_eq!(refused.kind(), ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_port_reports_the_mode() {
    let upstream = nobody_listening();
    let rig = Rig::proxy_to(upstream).await;
    let status = control::answer(
        &rig.host,
        serde_json::from_value(json!({"op": "status"})).unwrap(),
    )
    .unwrap();
    assert_eq!(
        status["mode"],
        json!({"proxy": {"upstream": upstream.to_string()}})
    );
    let simulator = Rig::start().await;
    let status = control::answer(
        &simulator.host,
        serde_json::from_value(json!({"op": "status"})).unwrap(),
    );
    assert_eq!(status.unwrap()["mode"], "simulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_closes_the_terminals_connection_and_books_nothing_unseen() {
    let rig = Rig::start_in(Setup::Proxy).await;
    upstream_meets_every_sale(&rig, Action::Close { after_bytes: 0 });
    let mut terminal = rig.terminal().await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    ended.expect("a clean close");
    assert!(received.is_empty(), "{received:02X?}");
    event_noting(&rig, "closed by the upstream").await;
    assert_eq!(
        rig.upstream().ledger().net(&key("000001")),
        AMOUNT as i64,
        "the real host booked it"
    );
    assert!(
        rig.ledger().entries.is_empty(),
        "the wire never showed the approval, so the observation has none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_in_flight_when_the_terminal_leaves_is_still_booked() {
    let rig = Rig::start_in(Setup::Proxy).await;
    upstream_meets_every_sale(&rig, Action::Delay { ms: 300 });
    let mut terminal = rig.terminal().await;
    terminal.send(&sale("000001", AMOUNT)).await;
    drop(terminal);
    event_noting(&rig, "closed by the terminal").await;
    let deadline = Instant::now() + PATIENCE;
    while rig.ledger().entry(&key("000001")).is_none() {
        assert!(
            Instant::now() < deadline,
            "never booked: {:#?}",
            rig.host.journal(0)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}
