//! The acquirer host over real TCP, acting as a terminal: default processing, every fault knob of
//! domain.md §6, reversal and void bookkeeping with and without idempotency, settlement,
//! maintenance, the wire journal and the JSON control port.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use posrig_host::{
    control, monotonic_ns, Action, AlteredField, Direction, Entry, Host, HostConfig, JournalEntry, Key, Kind,
    Ledger, Rule, Settings,
};
use posrig_iso8583::{Codec, MacKey, Message, Spec};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/iso8583/cup.toml");
const MAC_KEY: &str = "0123456789ABCDEF";
/// 0x60, destination 0x0123, source 0x0456.
const TPDU: [u8; 5] = [0x60, 0x01, 0x23, 0x04, 0x56];
/// The same with destination and source swapped, as a reply must carry it.
const REPLY_TPDU: [u8; 5] = [0x60, 0x04, 0x56, 0x01, 0x23];
const HEADER: [u8; 6] = [0x61, 0x31, 0x00, 0x31, 0x11, 0x08];
const TID: &str = "TERM0001";
const MID: &str = "898310048990001";
const BATCH: &str = "000001";
const PAN: &str = "6222021234567890123";
const AMOUNT: u64 = 12_345;
/// How long a reply may take before a test gives up on it (a hang guard, not a timing check).
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the terminal listens to conclude that no reply is coming.
const SILENCE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------- the host and the terminal

/// A host started in-process with the codec and key the terminal uses too.
struct Rig {
    host: Arc<Host>,
    codec: Codec,
    key: MacKey,
}

impl Rig {
    async fn start() -> Rig {
        Rig::with(Settings::default()).await
    }

    async fn with(settings: Settings) -> Rig {
        let codec = Codec::new(Spec::load(SPEC).expect("the spec file loads"));
        let key = MacKey::from_hex(MAC_KEY).expect("a valid key");
        let host = Host::start(HostConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            codec: codec.clone(),
            mac_key: key.clone(),
            settings,
        })
        .await
        .expect("the host starts");
        Rig {
            host: Arc::new(host),
            codec,
            key,
        }
    }

    async fn terminal(&self) -> Terminal {
        let stream = TcpStream::connect(self.host.addr())
            .await
            .expect("the host accepts");
        Terminal {
            stream,
            codec: self.codec.clone(),
            key: self.key.clone(),
        }
    }

    fn rule(&self, kind: Kind, stan: Option<&str>, times: Option<u32>, action: Action) {
        self.host
            .add_rule(Rule {
                kind: Some(kind),
                stan: stan.map(str::to_string),
                times,
                action,
            })
            .expect("a valid rule");
    }

    fn ledger(&self) -> Ledger {
        self.host.ledger()
    }

    fn net(&self, stan: &str) -> i64 {
        self.ledger().net(&key(stan))
    }

    fn entry(&self, stan: &str) -> Entry {
        self.ledger()
            .entry(&key(stan))
            .cloned()
            .expect("the host booked the request")
    }

    /// The journal once `done` holds for it (entries are recorded just after the bytes move).
    async fn journal_when(&self, done: impl Fn(&[JournalEntry]) -> bool) -> Vec<JournalEntry> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let journal = self.host.journal(0);
            if done(&journal) {
                return journal;
            }
            assert!(Instant::now() < deadline, "journal never got there: {journal:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the host has journalled the request with this MTI and STAN.
    async fn processed(&self, mti: &str, stan: &str) -> JournalEntry {
        let is_it = |e: &JournalEntry| {
            e.direction == Direction::In && e.mti.as_deref() == Some(mti) && e.stan.as_deref() == Some(stan)
        };
        let journal = self.journal_when(|j| j.iter().any(is_it)).await;
        journal.into_iter().find(is_it).unwrap()
    }
}

/// A decoded reply with the bytes it came in.
struct Reply {
    body: Vec<u8>,
    message: Message,
}

impl Reply {
    fn code(&self) -> &str {
        self.text(39)
    }

    fn text(&self, field: u8) -> &str {
        self.message
            .text(field)
            .unwrap_or_else(|| panic!("reply lacks field {field}: {:?}", self.message))
    }
}

/// A terminal's TCP connection to the host.
struct Terminal {
    stream: TcpStream,
    codec: Codec,
    key: MacKey,
}

impl Terminal {
    /// Signs, frames and sends `request`; returns the encoded body.
    async fn send(&mut self, request: &Message) -> Vec<u8> {
        let body = self
            .codec
            .encode_signed(&mut request.clone(), &self.key)
            .expect("request encodes");
        self.send_body(body.clone()).await;
        body
    }

    async fn send_body(&mut self, body: Vec<u8>) {
        let framed = self.codec.frame(body).expect("request frames");
        self.stream.write_all(&framed).await.expect("request written");
    }

    /// The next reply, or `None` when none starts within `wait`.
    async fn reply_within(&mut self, wait: Duration) -> Option<Reply> {
        let mut prefix = [0u8; 2];
        tokio::time::timeout(wait, self.stream.read_exact(&mut prefix))
            .await
            .ok()?
            .expect("length prefix");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut body).await.expect("a whole reply");
        let message = self.codec.decode(&body).expect("the reply decodes");
        Some(Reply { body, message })
    }

    async fn reply(&mut self) -> Reply {
        self.reply_within(PATIENCE).await.expect("a reply")
    }

    async fn exchange(&mut self, request: &Message) -> Reply {
        self.send(request).await;
        self.reply().await
    }

    async fn assert_silent(&mut self) {
        let reply = self.reply_within(SILENCE).await;
        assert!(reply.is_none(), "unexpected reply {:?}", reply.map(|r| r.message));
    }

    fn mac_ok(&self, reply: &Reply) -> Option<bool> {
        self.codec.verify_mac(&reply.body, &reply.message, &self.key)
    }

    /// Every byte until the host ends the connection, and how it ended.
    async fn read_to_end(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        let mut received = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk)).await;
            match read.expect("the host ends the connection") {
                Ok(0) => return (received, Ok(())),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) => return (received, Err(e)),
            }
        }
    }
}

// ---------------------------------------------------------------- messages a terminal sends

fn key(stan: &str) -> Key {
    Key {
        tid: TID.into(),
        batch: BATCH.into(),
        stan: stan.into(),
    }
}

fn stan(n: u32) -> String {
    format!("{n:06}")
}

fn message(mti: &str, stan: &str) -> Message {
    let mut message = Message::new(mti, &TPDU, &HEADER);
    message.set(11, stan).set(41, TID).set(42, MID);
    message
}

/// A financial 0200 with card data, of transaction type `kind` (60.1).
fn financial(processing_code: &str, kind: &str, stan: &str, amount: u64) -> Message {
    let mut request = message("0200", stan);
    request
        .set(2, PAN)
        .set(3, processing_code)
        .set(4, format!("{amount:012}"))
        .set(14, "2912")
        .set(22, "051")
        .set(25, "00")
        .set(35, format!("{PAN}D2912201"))
        .set(49, "156")
        .set(60, format!("{kind}{BATCH}000"));
    request
}

fn sale(stan: &str, amount: u64) -> Message {
    financial("000000", "22", stan, amount)
}

/// What a void must quote of the sale it cancels.
#[derive(Clone)]
struct Original {
    stan: String,
    amount: u64,
    rrn: String,
    auth: String,
}

impl Original {
    fn of(reply: &Reply) -> Original {
        Original {
            stan: reply.text(11).into(),
            amount: reply.text(4).parse().unwrap(),
            rrn: reply.text(37).into(),
            auth: reply.text(38).into(),
        }
    }

    fn unknown(stan: &str) -> Original {
        Original {
            stan: stan.into(),
            amount: AMOUNT,
            rrn: "000000000000".into(),
            auth: "000000".into(),
        }
    }
}

fn void(stan: &str, original: &Original) -> Message {
    let mut request = financial("200000", "23", stan, original.amount);
    request
        .set(37, original.rrn.as_str())
        .set(38, original.auth.as_str())
        .set(61, format!("{BATCH}{}0615", original.stan));
    request
}

/// The 0400 for `original`, repeating its key fields, with `reason` in 39.
fn reversal(original: &Message, reason: &str) -> Message {
    let mut request = Message::new("0400", &TPDU, &HEADER);
    for field in [2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60, 61] {
        if let Some(value) = original.fields.get(&field) {
            request.set(field, value.clone());
        }
    }
    request.set(39, reason);
    request
}

fn signon(stan: &str) -> Message {
    let mut request = message("0800", stan);
    request.set(60, format!("00{BATCH}003"));
    request
}

fn settlement(stan: &str, (count, amount): (u32, u64)) -> Message {
    let mut request = message("0500", stan);
    request
        .set(49, "156")
        .set(60, format!("00{BATCH}201"))
        .set(63, format!("{count:03}{amount:012}"));
    request
}

/// Sends a sale and insists that it is approved; returns the request and the reply.
async fn approved_sale(terminal: &mut Terminal, stan: &str) -> (Message, Reply) {
    let request = sale(stan, AMOUNT);
    let reply = terminal.exchange(&request).await;
    assert_eq!(reply.code(), "00", "sale {stan}");
    (request, reply)
}

/// An approved sale and an approved void of it; returns the void request.
async fn voided_sale(rig: &Rig, terminal: &mut Terminal, sale_stan: &str, void_stan: &str) -> Message {
    let (_, reply) = approved_sale(terminal, sale_stan).await;
    let request = void(void_stan, &Original::of(&reply));
    assert_eq!(terminal.exchange(&request).await.code(), "00");
    assert_eq!(rig.net(sale_stan), 0);
    request
}

/// A host that meets every sale with `action`, and a terminal connected to it.
async fn every_sale_meets(action: Action) -> (Rig, Terminal) {
    let rig = Rig::start().await;
    rig.rule(Kind::Sale, None, None, action);
    let terminal = rig.terminal().await;
    (rig, terminal)
}

/// Sends sale 000001 to a host that meets it with `action`; no reply comes, yet the host took it in.
async fn unanswered_sale(action: Action) -> Rig {
    let (rig, mut terminal) = every_sale_meets(action).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    terminal.assert_silent().await;
    rig.processed("0200", "000001").await;
    rig
}

/// The ledger holds no money movement at all.
fn assert_no_money(rig: &Rig) {
    let postings = rig.ledger().postings;
    assert!(postings.is_empty(), "money moved: {postings:?}");
}

// ---------------------------------------------------------------- default behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_is_approved_signed_and_booked() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ons_are_answered_without_mac_and_counted() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    for n in 1..=2 {
        let reply = terminal.exchange(&signon(&stan(n))).await;
        assert_eq!((reply.message.mti.as_str(), reply.code()), ("0810", "00"));
        assert_eq!(terminal.mac_ok(&reply), None, "sign-on carries no MAC");
        assert_eq!(rig.ledger().signons.get(TID), Some(&n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_bad_or_missing_mac_is_answered_a0_and_books_nothing() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stan_reused_in_the_batch_is_refused_94() {
    let rig = Rig::start().await;
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
    let (rig, mut terminal) = every_sale_meets(Action::Respond { code: "51".into() }).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_reply_books_the_sale_but_sends_nothing() {
    let rig = unanswered_sale(Action::DropReply).await;
    assert!(rig.entry("000001").approved());
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_request_neither_books_nor_answers() {
    let rig = unanswered_sale(Action::DropRequest).await;
    assert!(rig.ledger().entry(&key("000001")).is_none());
    assert_no_money(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_the_reply_back_at_least_the_given_time() {
    let (rig, mut terminal) = every_sale_meets(Action::Delay { ms: 200 }).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sends_two_identical_replies_for_one_booking() {
    let (rig, mut terminal) = every_sale_meets(Action::Duplicate).await;
    let (_, first) = approved_sale(&mut terminal, "000001").await;
    let second = terminal.reply().await;
    assert_eq!(first.body, second.body);
    terminal.assert_silent().await;
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_mac_spoils_the_reply_mac_only() {
    let (rig, mut terminal) = every_sale_meets(Action::CorruptMac).await;
    let (_, reply) = approved_sale(&mut terminal, "000001").await;
    assert_eq!(terminal.mac_ok(&reply), Some(false));
    assert_eq!(rig.net("000001"), AMOUNT as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_changes_the_chosen_reply_field_and_keeps_the_others() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_the_first_bytes_of_the_reply_then_ends_the_connection() {
    let (rig, mut terminal) = every_sale_meets(Action::Close { after_bytes: 7 }).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    ended.expect("a clean close");
    assert_eq!(received.len(), 7, "length prefix and TPDU only: {received:02X?}");
    assert_eq!(received[2..], REPLY_TPDU);
    assert_eq!(rig.net("000001"), AMOUNT as i64, "processed before the cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_ends_the_connection_without_a_reply() {
    let (rig, mut terminal) = every_sale_meets(Action::Reset { after_bytes: 0 }).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    let (received, ended) = terminal.read_to_end().await;
    assert!(received.is_empty(), "no reply bytes expected: {received:02X?}");
    if let Err(e) = ended {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(rig.net("000001"), AMOUNT as i64, "processed before the reset");
}

// ---------------------------------------------------------------- rule matching

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_by_stan_and_kind_and_retire_after_their_count() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_returns_the_money_once_even_when_repeated() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_of_an_unknown_original_is_answered_25() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_of_an_approved_sale_cancels_it() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_of_an_unknown_sale_is_answered_25() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    let reply = terminal
        .exchange(&void("000002", &Original::unknown("000001")))
        .await;
    assert_eq!(reply.code(), "25");
    assert_no_money(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_void_of_a_voided_sale_is_answered_12() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_for_another_amount_is_answered_64() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_void_restores_the_sale() {
    let rig = Rig::start().await;
    let mut terminal = rig.terminal().await;
    let void = voided_sale(&rig, &mut terminal, "000001", "000002").await;
    assert_eq!(terminal.exchange(&reversal(&void, "98")).await.code(), "00");
    assert_eq!(rig.net("000001"), AMOUNT as i64);
    assert!(rig.entry("000001").voided_by.is_empty());
    assert_eq!(rig.entry("000002").reversals_applied, 1);
}

// ---------------------------------------------------------------- settlement

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_compares_the_terminal_totals_with_the_ledger() {
    let rig = Rig::start().await;
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

/// Tries to connect until the outcome is `refused` (true) or accepted (false).
async fn connect_until(rig: &Rig, refused: bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let outcome = TcpStream::connect(rig.host.addr()).await;
        match &outcome {
            Err(e) if refused && e.kind() == ErrorKind::ConnectionRefused => return,
            Ok(_) if !refused => return,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "still {outcome:?} (wanted refused={refused})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_refuses_connections_until_it_ends() {
    let rig = Rig::start().await;
    let addr = rig.host.addr();
    rig.host.set_settings(Settings {
        maintenance: true,
        ..Settings::default()
    });
    connect_until(&rig, true).await;
    rig.host.set_settings(Settings::default());
    connect_until(&rig, false).await;
    assert_eq!(rig.host.addr(), addr);
    approved_sale(&mut rig.terminal().await, "000001").await;
}

// ---------------------------------------------------------------- journal

fn is_message(entry: &JournalEntry, direction: Direction, mti: &str) -> bool {
    entry.direction == direction && entry.mti.as_deref() == Some(mti)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_records_every_message_in_order_on_the_rig_clock() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gives_the_backlog_then_live_entries() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_written_together_are_decided_in_arrival_order() {
    let rig = Rig::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_sale_cannot_be_voided_and_a_voided_sale_cannot_be_reversed() {
    let rig = Rig::start().await;
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
