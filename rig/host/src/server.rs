//! The TCP side of the host: accepts terminals, frames and decodes requests, lets the acquirer
//! decide, applies the delivery knobs, and journals every byte on the rig's clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posrig_iso8583::{Codec, MacKey, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::acquirer::{Acquirer, Settings};
use crate::clock::monotonic_ns;
use crate::journal::{Direction, Journal, JournalEntry};
use crate::knobs::{Action, AlteredField, Rule};
use crate::ledger::Ledger;

/// What the host needs to start.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where terminals connect; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The message codec (from the spec file).
    pub codec: Codec,
    /// The MAC working key shared with the terminals.
    pub mac_key: MacKey,
    /// Initial settings.
    pub settings: Settings,
}

/// Called with every journal entry as it is recorded, on the host's own thread, in journal order.
/// It must be quick and must not call back into the host's journal.
pub type Observer = Arc<dyn Fn(&JournalEntry) + Send + Sync>;

/// A running acquirer host. Dropping it stops serving.
pub struct Host {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

struct Shared {
    codec: Codec,
    key: MacKey,
    acquirer: Mutex<Acquirer>,
    journal: Mutex<Journal>,
    feed: broadcast::Sender<JournalEntry>,
    observers: Mutex<Vec<Observer>>,
    initial_settings: Settings,
    maintenance: watch::Sender<bool>,
    connections: AtomicU64,
}

impl Host {
    /// Binds the listening socket and starts serving on the current tokio runtime.
    pub async fn start(config: HostConfig) -> std::io::Result<Host> {
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let (maintenance, _) = watch::channel(config.settings.maintenance);
        let shared = Arc::new(Shared {
            codec: config.codec,
            key: config.mac_key,
            acquirer: Mutex::new(Acquirer::with_settings(config.settings)),
            journal: Mutex::new(Journal::default()),
            feed: broadcast::channel(4096).0,
            observers: Mutex::new(Vec::new()),
            initial_settings: config.settings,
            maintenance,
            connections: AtomicU64::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(shared.clone(), listener, addr));
        Ok(Host {
            shared,
            addr,
            accept_task,
        })
    }

    /// The address terminals connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a fault rule after the existing ones; a rule that cannot work is refused with the
    /// reason.
    pub fn add_rule(&self, rule: Rule) -> Result<(), String> {
        self.shared.acquirer().rules.add(rule)
    }

    /// Removes every fault rule.
    pub fn clear_rules(&self) {
        self.shared.acquirer().rules.clear();
    }

    /// The rules in force (with their remaining counts).
    pub fn rules(&self) -> Vec<Rule> {
        self.shared.acquirer().rules.rules().to_vec()
    }

    /// Replaces the settings; maintenance takes effect at once.
    pub fn set_settings(&self, settings: Settings) {
        self.shared.acquirer().settings = settings;
        self.shared.maintenance.send_replace(settings.maintenance);
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.shared.acquirer().settings
    }

    /// A copy of the ledger.
    pub fn ledger(&self) -> Ledger {
        self.shared.acquirer().ledger.clone()
    }

    /// Journal entries from position `since` on.
    pub fn journal(&self, since: u64) -> Vec<JournalEntry> {
        self.shared.journal.lock().expect("journal lock").since(since)
    }

    /// The position the next journal entry will get: where a reader that has seen everything
    /// goes on from.
    pub fn journal_next(&self) -> u64 {
        self.shared.journal.lock().expect("journal lock").next_seq()
    }

    /// Journal entries from `since` on, and a feed of every later one, with no gap between them.
    pub fn watch(&self, since: u64) -> (Vec<JournalEntry>, broadcast::Receiver<JournalEntry>) {
        let journal = self.shared.journal.lock().expect("journal lock");
        let feed = self.shared.feed.subscribe();
        (journal.since(since), feed)
    }

    /// Adds an observer of journal entries: the rig's timeline and trigger engine see every
    /// message the moment it is recorded, with no channel in between.
    pub fn observe(&self, observer: Observer) {
        self.shared
            .observers
            .lock()
            .expect("observers lock")
            .push(observer);
    }

    /// Empties the ledger, the journal and the rules and restores the settings the host started
    /// with. Journal positions and reference numbers keep counting, so a watcher goes on without a
    /// gap and no RRN repeats.
    pub fn reset(&self) {
        self.shared.acquirer().reset(self.shared.initial_settings);
        self.shared.journal.lock().expect("journal lock").clear();
        self.shared
            .maintenance
            .send_replace(self.shared.initial_settings.maintenance);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl Shared {
    fn acquirer(&self) -> std::sync::MutexGuard<'_, Acquirer> {
        self.acquirer.lock().expect("acquirer lock")
    }

    fn record(&self, entry: JournalEntry) {
        let mut journal = self.journal.lock().expect("journal lock");
        let entry = journal.push(entry);
        for observer in self.observers.lock().expect("observers lock").iter() {
            observer(&entry);
        }
        // Sent under the lock so watchers see entries in journal order; nobody watching is fine.
        let _ = self.feed.send(entry);
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts terminals; while in maintenance the listening socket is closed so connections are
/// refused, and it is bound again when maintenance ends.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut maintenance = shared.maintenance.subscribe();
    let mut listener = Some(listener);
    loop {
        if *maintenance.borrow_and_update() {
            listener = None;
        } else if listener.is_none() {
            match bind(addr) {
                Ok(bound) => listener = Some(bound),
                Err(e) => {
                    let note = format!("cannot listen on {addr} again after maintenance: {e}");
                    shared.record(JournalEntry::event(0, monotonic_ns(), &[], note));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(open) = listener.as_ref() else {
            if maintenance.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((stream, peer)) = accepted {
                    let id = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
                    shared.record(JournalEntry::event(id, monotonic_ns(), &[], format!("connection from {peer}")));
                    tokio::spawn(serve_connection(shared.clone(), stream, id));
                }
            }
            changed = maintenance.changed() => if changed.is_err() { return },
        }
    }
}

/// One terminal connection: its write half and the means to end it from a rule.
struct Connection {
    id: u64,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    ended: Notify,
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let connection = Arc::new(Connection {
        id,
        writer: tokio::sync::Mutex::new(Some(writer)),
        ended: Notify::new(),
    });
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let why = loop {
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read,
            () = connection.ended.notified() => break "closed by the host (rule)".to_string(),
        };
        let t_ns = monotonic_ns();
        match read {
            Ok(0) => break "closed by the terminal".to_string(),
            Err(e) => break format!("connection error: {e}"),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        while let Some((body, used)) = shared.codec.split_frame(&buffer) {
            let body = body.to_vec();
            buffer.drain(..used);
            // Decided here, in arrival order; only the delivery (which may be delayed) runs apart.
            if let Some((reply, delivery)) = decide(&shared, &connection, &body, t_ns) {
                let delayed = matches!(delivery, Some(Action::Delay { .. }));
                let sending = deliver(shared.clone(), connection.clone(), reply, delivery);
                if delayed {
                    tokio::spawn(sending);
                } else {
                    sending.await;
                }
            }
        }
    };
    shared.record(JournalEntry::event(id, monotonic_ns(), &buffer, why));
}

/// Decodes and journals one request and lets the acquirer decide; returns the reply to deliver.
fn decide(
    shared: &Shared,
    connection: &Connection,
    body: &[u8],
    t_ns: u64,
) -> Option<(Message, Option<Action>)> {
    let request = match shared.codec.decode(body) {
        Ok(request) => request,
        Err(e) => {
            let note = format!("undecodable frame, not answered: {e}");
            shared.record(JournalEntry::event(connection.id, t_ns, body, note));
            return None;
        }
    };
    let mac_ok = shared.codec.verify_mac(body, &request, &shared.key);
    // Journaled under the acquirer's lock, so the journal's order is the order of the books.
    let mut acquirer = shared.acquirer();
    let decision = acquirer.decide(&shared.codec, &request, mac_ok, t_ns);
    let entry = JournalEntry::message(Direction::In, connection.id, t_ns, &request, body, decision.note);
    shared.record(entry);
    drop(acquirer);
    Some((decision.reply?, decision.delivery))
}

async fn deliver(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut reply: Message,
    delivery: Option<Action>,
) {
    let (shared, connection) = (&*shared, &*connection);
    if let Some(Action::Alter { field }) = &delivery {
        alter(&mut reply, *field);
    }
    let mut body = match shared.codec.encode_signed(&mut reply, &shared.key) {
        Ok(body) => body,
        Err(e) => {
            let note = format!("reply could not be encoded, not sent: {e}");
            shared.record(JournalEntry::event(connection.id, monotonic_ns(), &[], note));
            return;
        }
    };
    match delivery {
        None | Some(Action::Alter { .. }) => send(shared, connection, &reply, &body, "reply").await,
        Some(Action::DropReply) => {}
        Some(Action::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            send(
                shared,
                connection,
                &reply,
                &body,
                &format!("reply delayed {ms} ms"),
            )
            .await;
        }
        Some(Action::Duplicate) => {
            send(shared, connection, &reply, &body, "reply").await;
            send(
                shared,
                connection,
                &reply,
                &body,
                "reply sent again (rule duplicate)",
            )
            .await;
        }
        Some(Action::CorruptMac) => {
            if !reply.has(shared.codec.spec().mac.field) {
                send(
                    shared,
                    connection,
                    &reply,
                    &body,
                    "reply (exempt from MAC, nothing to corrupt)",
                )
                .await;
                return;
            }
            let last = body.len() - 1;
            body[last] = if body[last] == b'0' { b'1' } else { b'0' };
            let mac = body[last - 7..].to_vec();
            reply.set(shared.codec.spec().mac.field, mac);
            send(shared, connection, &reply, &body, "reply with a corrupted MAC").await;
        }
        Some(Action::Close { after_bytes }) => cut(shared, connection, &body, after_bytes, false).await,
        Some(Action::Reset { after_bytes }) => cut(shared, connection, &body, after_bytes, true).await,
        Some(Action::Respond { .. } | Action::DropRequest) => unreachable!("decided before delivery"),
    }
}

fn alter(reply: &mut Message, field: AlteredField) {
    let bump = |text: Option<&str>, width: usize| {
        let n: u64 = text.and_then(|t| t.parse().ok()).unwrap_or(0);
        format!("{:0width$}", (n + 1) % 10u64.pow(width as u32))
    };
    match field {
        AlteredField::Stan => {
            let stan = bump(reply.text(11), 6);
            reply.set(11, stan);
        }
        AlteredField::Amount => {
            let amount = bump(reply.text(4), 12);
            reply.set(4, amount);
        }
        AlteredField::Tid => {
            let tid: String = reply.text(41).unwrap_or("00000000").chars().rev().collect();
            let tid = if Some(tid.as_str()) == reply.text(41) {
                "ZZZZZZZZ".to_string()
            } else {
                tid
            };
            reply.set(41, tid);
        }
    }
}

async fn send(shared: &Shared, connection: &Connection, reply: &Message, body: &[u8], note: &str) {
    let framed = match shared.codec.frame(body.to_vec()) {
        Ok(framed) => framed,
        Err(e) => {
            let note = format!("reply too long to frame, not sent: {e}");
            shared.record(JournalEntry::event(connection.id, monotonic_ns(), body, note));
            return;
        }
    };
    let mut writer = connection.writer.lock().await;
    let outcome = match writer.as_mut() {
        Some(w) => w.write_all(&framed).await.map_err(|e| e.to_string()),
        None => Err("the connection was already closed".to_string()),
    };
    let t_ns = monotonic_ns();
    match outcome {
        Ok(()) => shared.record(JournalEntry::message(
            Direction::Out,
            connection.id,
            t_ns,
            reply,
            body,
            note.to_string(),
        )),
        Err(e) => {
            let note = format!("{note} could not be delivered: {e}");
            shared.record(JournalEntry::event(connection.id, t_ns, body, note));
        }
    }
}

/// Writes the first `after_bytes` bytes of the framed reply, then closes the connection, with an
/// RST when `reset`.
async fn cut(shared: &Shared, connection: &Connection, body: &[u8], after_bytes: usize, reset: bool) {
    let Ok(framed) = shared.codec.frame(body.to_vec()) else {
        return;
    };
    let partial = &framed[..after_bytes.min(framed.len())];
    let mut writer = connection.writer.lock().await;
    if let Some(mut w) = writer.take() {
        let _ = w.write_all(partial).await;
        if reset {
            let _ = socket2::SockRef::from(w.as_ref()).set_linger(Some(Duration::ZERO));
        }
        drop(w);
    }
    connection.ended.notify_one();
    let how = if reset { "reset" } else { "closed" };
    let note = format!(
        "wrote {} of {} reply bytes, then {how} the connection (rule)",
        partial.len(),
        framed.len()
    );
    shared.record(JournalEntry::event(connection.id, monotonic_ns(), partial, note));
}
