//! What the host tests share: an in-process host (the simulator, or a proxy in front of one) and a
//! terminal talking to it over real TCP, and the messages a terminal sends.

#![allow(dead_code)] // each test file uses its own subset

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use posrig_host::{
    Action, Direction, Entry, Host, HostConfig, JournalEntry, Key, Kind, Ledger, Mode, Rule, Settings,
};
use posrig_iso8583::{Codec, MacKey, Message, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/iso8583/cup.toml");
pub const MAC_KEY: &str = "0123456789ABCDEF";
/// 0x60, destination 0x0123, source 0x0456.
pub const TPDU: [u8; 5] = [0x60, 0x01, 0x23, 0x04, 0x56];
/// The same with destination and source swapped, as a reply must carry it.
pub const REPLY_TPDU: [u8; 5] = [0x60, 0x04, 0x56, 0x01, 0x23];
pub const HEADER: [u8; 6] = [0x61, 0x31, 0x00, 0x31, 0x11, 0x08];
pub const TID: &str = "TERM0001";
pub const MID: &str = "898310048990001";
pub const BATCH: &str = "000001";
pub const PAN: &str = "6222021234567890123";
pub const AMOUNT: u64 = 12_345;
/// How long a reply may take before a test gives up on it (a hang guard, not a timing check).
pub const PATIENCE: Duration = Duration::from_secs(5);
/// How long the terminal listens to conclude that no reply is coming.
pub const SILENCE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------- the host and the terminal

/// A host started in-process with the codec and key the terminal uses too.
pub struct Rig {
    /// The host the terminal connects to.
    pub host: Arc<Host>,
    /// In the proxy setup, the simulator behind the proxy.
    pub upstream: Option<Arc<Host>>,
    pub codec: Codec,
    pub key: MacKey,
}

/// Which host the terminal talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The simulator itself.
    Simulator,
    /// A proxy in front of an honest simulator; the knobs act at the proxy.
    Proxy,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::with(Settings::default()).await
    }

    pub async fn with(settings: Settings) -> Rig {
        Rig::host(settings, Mode::Simulator).await
    }

    /// A simulator, or a proxy with a simulator behind it.
    pub async fn start_in(setup: Setup) -> Rig {
        match setup {
            Setup::Simulator => Rig::start().await,
            Setup::Proxy => {
                let upstream = Rig::start().await;
                let mut proxy = Rig::proxy_to(upstream.host.addr()).await;
                proxy.upstream = Some(upstream.host);
                proxy
            }
        }
    }

    /// A proxy forwarding to `upstream`.
    pub async fn proxy_to(upstream: SocketAddr) -> Rig {
        Rig::host(Settings::default(), Mode::Proxy { upstream }).await
    }

    async fn host(settings: Settings, mode: Mode) -> Rig {
        let codec = Codec::new(Spec::load(SPEC).expect("the spec file loads"));
        let key = MacKey::from_hex(MAC_KEY).expect("a valid key");
        let config = HostConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            codec: codec.clone(),
            mac_key: key.clone(),
            settings,
        };
        let host = Host::start_with_mode(config, mode)
            .await
            .expect("the host starts");
        Rig {
            host: Arc::new(host),
            upstream: None,
            codec,
            key,
        }
    }

    /// The simulator behind the proxy.
    pub fn upstream(&self) -> &Host {
        self.upstream.as_deref().expect("a proxy setup")
    }

    pub async fn terminal(&self) -> Terminal {
        let stream = TcpStream::connect(self.host.addr())
            .await
            .expect("the host accepts");
        Terminal {
            stream,
            codec: self.codec.clone(),
            key: self.key.clone(),
        }
    }

    pub fn rule(&self, kind: Kind, stan: Option<&str>, times: Option<u32>, action: Action) {
        self.host
            .add_rule(Rule {
                kind: Some(kind),
                stan: stan.map(str::to_string),
                times,
                action,
            })
            .expect("a valid rule");
    }

    pub fn ledger(&self) -> Ledger {
        self.host.ledger()
    }

    pub fn net(&self, stan: &str) -> i64 {
        self.ledger().net(&key(stan))
    }

    pub fn entry(&self, stan: &str) -> Entry {
        self.ledger()
            .entry(&key(stan))
            .cloned()
            .expect("the host booked the request")
    }

    /// The journal once `done` holds for it (entries are recorded just after the bytes move).
    pub async fn journal_when(&self, done: impl Fn(&[JournalEntry]) -> bool) -> Vec<JournalEntry> {
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
    pub async fn processed(&self, mti: &str, stan: &str) -> JournalEntry {
        let is_it = |e: &JournalEntry| {
            e.direction == Direction::In && e.mti.as_deref() == Some(mti) && e.stan.as_deref() == Some(stan)
        };
        let journal = self.journal_when(|j| j.iter().any(is_it)).await;
        journal.into_iter().find(is_it).unwrap()
    }
}

/// A decoded reply with the bytes it came in.
pub struct Reply {
    pub body: Vec<u8>,
    pub message: Message,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.text(39)
    }

    pub fn text(&self, field: u8) -> &str {
        self.message
            .text(field)
            .unwrap_or_else(|| panic!("reply lacks field {field}: {:?}", self.message))
    }
}

/// A terminal's TCP connection to the host.
pub struct Terminal {
    pub stream: TcpStream,
    pub codec: Codec,
    pub key: MacKey,
}

impl Terminal {
    /// Signs, frames and sends `request`; returns the encoded body.
    pub async fn send(&mut self, request: &Message) -> Vec<u8> {
        let body = self
            .codec
            .encode_signed(&mut request.clone(), &self.key)
            .expect("request encodes");
        self.send_body(body.clone()).await;
        body
    }

    pub async fn send_body(&mut self, body: Vec<u8>) {
        let framed = self.codec.frame(body).expect("request frames");
        self.stream.write_all(&framed).await.expect("request written");
    }

    /// The next reply, or `None` when none starts within `wait`.
    pub async fn reply_within(&mut self, wait: Duration) -> Option<Reply> {
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

    pub async fn reply(&mut self) -> Reply {
        self.reply_within(PATIENCE).await.expect("a reply")
    }

    pub async fn exchange(&mut self, request: &Message) -> Reply {
        self.send(request).await;
        self.reply().await
    }

    pub async fn assert_silent(&mut self) {
        let reply = self.reply_within(SILENCE).await;
        assert!(reply.is_none(), "unexpected reply {:?}", reply.map(|r| r.message));
    }

    pub fn mac_ok(&self, reply: &Reply) -> Option<bool> {
        self.codec.verify_mac(&reply.body, &reply.message, &self.key)
    }

    /// Every byte until the host ends the connection, and how it ended.
    pub async fn read_to_end(&mut self) -> (Vec<u8>, std::io::Result<()>) {
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

pub fn key(stan: &str) -> Key {
    Key {
        tid: TID.into(),
        batch: BATCH.into(),
        stan: stan.into(),
    }
}

pub fn stan(n: u32) -> String {
    format!("{n:06}")
}

pub fn message(mti: &str, stan: &str) -> Message {
    let mut message = Message::new(mti, &TPDU, &HEADER);
    message.set(11, stan).set(41, TID).set(42, MID);
    message
}

/// A financial 0200 with card data, of transaction type `kind` (60.1).
pub fn financial(processing_code: &str, kind: &str, stan: &str, amount: u64) -> Message {
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

pub fn sale(stan: &str, amount: u64) -> Message {
    financial("000000", "22", stan, amount)
}

/// What a void must quote of the sale it cancels.
#[derive(Clone)]
pub struct Original {
    pub stan: String,
    pub amount: u64,
    pub rrn: String,
    pub auth: String,
}

impl Original {
    pub fn of(reply: &Reply) -> Original {
        Original {
            stan: reply.text(11).into(),
            amount: reply.text(4).parse().unwrap(),
            rrn: reply.text(37).into(),
            auth: reply.text(38).into(),
        }
    }

    pub fn unknown(stan: &str) -> Original {
        Original {
            stan: stan.into(),
            amount: AMOUNT,
            rrn: "000000000000".into(),
            auth: "000000".into(),
        }
    }
}

pub fn void(stan: &str, original: &Original) -> Message {
    let mut request = financial("200000", "23", stan, original.amount);
    request
        .set(37, original.rrn.as_str())
        .set(38, original.auth.as_str())
        .set(61, format!("{BATCH}{}0615", original.stan));
    request
}

/// The 0400 for `original`, repeating its key fields, with `reason` in 39.
pub fn reversal(original: &Message, reason: &str) -> Message {
    let mut request = Message::new("0400", &TPDU, &HEADER);
    for field in [2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60, 61] {
        if let Some(value) = original.fields.get(&field) {
            request.set(field, value.clone());
        }
    }
    request.set(39, reason);
    request
}

pub fn signon(stan: &str) -> Message {
    let mut request = message("0800", stan);
    request.set(60, format!("00{BATCH}003"));
    request
}

pub fn settlement(stan: &str, (count, amount): (u32, u64)) -> Message {
    let mut request = message("0500", stan);
    request
        .set(49, "156")
        .set(60, format!("00{BATCH}201"))
        .set(63, format!("{count:03}{amount:012}"));
    request
}

/// Sends a sale and insists that it is approved; returns the request and the reply.
pub async fn approved_sale(terminal: &mut Terminal, stan: &str) -> (Message, Reply) {
    let request = sale(stan, AMOUNT);
    let reply = terminal.exchange(&request).await;
    assert_eq!(reply.code(), "00", "sale {stan}");
    (request, reply)
}

/// An approved sale and an approved void of it; returns the void request.
pub async fn voided_sale(rig: &Rig, terminal: &mut Terminal, sale_stan: &str, void_stan: &str) -> Message {
    let (_, reply) = approved_sale(terminal, sale_stan).await;
    let request = void(void_stan, &Original::of(&reply));
    assert_eq!(terminal.exchange(&request).await.code(), "00");
    assert_eq!(rig.net(sale_stan), 0);
    request
}

/// A host in `setup` that meets every sale with `action`, and a terminal connected to it.
pub async fn every_sale_meets(setup: Setup, action: Action) -> (Rig, Terminal) {
    let rig = Rig::start_in(setup).await;
    rig.rule(Kind::Sale, None, None, action);
    let terminal = rig.terminal().await;
    (rig, terminal)
}

/// Sends sale 000001 to a host that meets it with `action`; no reply comes, yet the host took it in.
pub async fn unanswered_sale(setup: Setup, action: Action) -> Rig {
    let (rig, mut terminal) = every_sale_meets(setup, action).await;
    terminal.send(&sale("000001", AMOUNT)).await;
    terminal.assert_silent().await;
    rig.processed("0200", "000001").await;
    rig
}

/// The ledger holds no money movement at all.
pub fn assert_no_money(rig: &Rig) {
    let postings = rig.ledger().postings;
    assert!(postings.is_empty(), "money moved: {postings:?}");
}

/// Tries to connect until the outcome is `refused` (true) or accepted (false).
pub async fn connect_until(rig: &Rig, refused: bool) {
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

/// True for a journal entry going `direction` with `mti`.
pub fn is_message(entry: &JournalEntry, direction: Direction, mti: &str) -> bool {
    entry.direction == direction && entry.mti.as_deref() == Some(mti)
}
