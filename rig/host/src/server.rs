//! The TCP side of the host: accepts terminals and, in simulator mode, frames and decodes their
//! requests, lets the acquirer decide and delivers the replies under the knobs (in proxy mode the
//! [`proxy`](crate::proxy) module serves each connection instead); journals every byte on the
//! rig's clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posrig_iso8583::{Codec, MacKey};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::acquirer::{Acquirer, Settings};
use crate::clock::monotonic_ns;
use crate::delivery::{self, Connection, Reply};
use crate::journal::{Direction, Journal, JournalEntry};
use crate::knobs::{Action, Rule};
use crate::ledger::Ledger;
use crate::proxy;

/// What the host is: the acquirer simulator, or a proxy in front of a real acquirer test host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The host decides every request itself and keeps its own books.
    #[default]
    Simulator,
    /// The host forwards every terminal connection to `upstream`, one upstream connection per
    /// terminal connection, journals both directions, and applies the fault knobs on the way.
    /// Its ledger is an observation: what the real host approved as far as the wire shows.
    /// Rules that would need the real host to behave otherwise are refused: see
    /// [`Mode::check_rule`] and [`Mode::check_settings`].
    Proxy {
        /// The real acquirer test host.
        upstream: SocketAddr,
    },
}

impl Mode {
    /// Checks that this mode can honour `rule`. In proxy mode `respond` answers in the real
    /// host's place with a synthetic reply signed with the host's key (to simulate a decline, or
    /// a refused reversal) and the request is not forwarded; `respond` with 00 is refused, as it
    /// would fake an approval the real host never gave.
    pub fn check_rule(&self, rule: &Rule) -> Result<(), String> {
        match (self, &rule.action) {
            (Mode::Proxy { .. }, Action::Respond { code }) if code == "00" => Err(
                "respond 00: in proxy mode the proxy would fake an approval the real host never gave; \
                 leave the request without a rule to let the real host approve it"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Checks that this mode can honour `settings`. In proxy mode maintenance refuses the
    /// terminals' connections as the simulator does, but idempotency is the real host's
    /// behaviour, so turning it off is refused.
    pub fn check_settings(&self, settings: &Settings) -> Result<(), String> {
        let defaults = Settings::default();
        let proxy = matches!(self, Mode::Proxy { .. });
        let why = "in proxy mode the real host decides whether a repeated request applies again; \
                   the proxy cannot change that";
        if proxy && settings.idempotent_reversals != defaults.idempotent_reversals {
            Err(format!("idempotent_reversals=false: {why}"))
        } else if proxy && settings.idempotent_voids != defaults.idempotent_voids {
            Err(format!("idempotent_voids=false: {why}"))
        } else {
            Ok(())
        }
    }
}

/// What the host needs to start (the mode is given to [`Host::start_with_mode`]).
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

/// Called with the maintenance flag whenever the settings are replaced (or reset), on the thread
/// that replaced them.
pub type MaintenanceHook = Arc<dyn Fn(bool) + Send + Sync>;

/// A running acquirer host. Dropping it stops serving.
pub struct Host {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

/// What every connection of a host shares.
pub(crate) struct Shared {
    /// The message codec.
    pub codec: Codec,
    /// The MAC key replies are signed with.
    pub key: MacKey,
    mode: Mode,
    acquirer: Mutex<Acquirer>,
    journal: Mutex<Journal>,
    feed: broadcast::Sender<JournalEntry>,
    observers: Mutex<Vec<Observer>>,
    maintenance_hooks: Mutex<Vec<MaintenanceHook>>,
    initial_settings: Settings,
    maintenance: watch::Sender<bool>,
    connections: AtomicU64,
}

impl Host {
    /// Binds the listening socket and starts the simulator on the current tokio runtime.
    pub async fn start(config: HostConfig) -> std::io::Result<Host> {
        Host::start_with_mode(config, Mode::Simulator).await
    }

    /// Binds the listening socket and starts serving in `mode` on the current tokio runtime;
    /// settings the mode cannot honour are refused (`InvalidInput`, saying why).
    pub async fn start_with_mode(config: HostConfig, mode: Mode) -> std::io::Result<Host> {
        mode.check_settings(&config.settings)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let (maintenance, _) = watch::channel(config.settings.maintenance);
        let shared = Arc::new(Shared {
            codec: config.codec,
            key: config.mac_key,
            mode,
            acquirer: Mutex::new(Acquirer::with_settings(config.settings)),
            journal: Mutex::new(Journal::default()),
            feed: broadcast::channel(4096).0,
            observers: Mutex::new(Vec::new()),
            maintenance_hooks: Mutex::new(Vec::new()),
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

    /// Simulator or proxy, and where the proxy forwards to.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// Adds a fault rule after the existing ones; a rule that cannot work (in this mode) is
    /// refused with the reason.
    pub fn add_rule(&self, rule: Rule) -> Result<(), String> {
        self.shared.mode.check_rule(&rule)?;
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

    /// Replaces the settings; maintenance takes effect at once. Settings this mode cannot
    /// honour are refused with the reason, and nothing changes.
    pub fn set_settings(&self, settings: Settings) -> Result<(), String> {
        self.shared.mode.check_settings(&settings)?;
        self.shared.acquirer().settings = settings;
        self.set_maintenance(settings.maintenance);
        Ok(())
    }

    /// Calls `hook` with the maintenance flag every time the settings are replaced, before the
    /// call that replaced them returns: a proxy in front of the host refuses connections exactly
    /// while the host does.
    pub fn on_maintenance(&self, hook: MaintenanceHook) {
        self.shared
            .maintenance_hooks
            .lock()
            .expect("maintenance hooks lock")
            .push(hook);
    }

    fn set_maintenance(&self, on: bool) {
        self.shared.maintenance.send_replace(on);
        let hooks = self
            .shared
            .maintenance_hooks
            .lock()
            .expect("maintenance hooks lock")
            .clone();
        for hook in hooks {
            hook(on);
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.shared.acquirer().settings
    }

    /// A copy of the ledger. In proxy mode it is an observation, not the real host's books: what
    /// the real host approved, reversed and settled as far as its replies on the wire show.
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
        self.set_maintenance(self.shared.initial_settings.maintenance);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl Shared {
    /// The acquirer: books, rules and settings.
    pub fn acquirer(&self) -> std::sync::MutexGuard<'_, Acquirer> {
        self.acquirer.lock().expect("acquirer lock")
    }

    /// Numbers and stores a journal entry and hands it to the observers and watchers.
    pub fn record(&self, entry: JournalEntry) {
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
                    match shared.mode {
                        Mode::Simulator => tokio::spawn(serve_connection(shared.clone(), stream, id)),
                        Mode::Proxy { upstream } => tokio::spawn(proxy::serve(shared.clone(), stream, id, upstream)),
                    };
                }
            }
            changed = maintenance.changed() => if changed.is_err() { return },
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let connection = Connection::new(id, writer);
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
                let held = delivery::is_held(delivery.as_ref());
                let sending = delivery::deliver(
                    shared.clone(),
                    connection.clone(),
                    reply,
                    delivery,
                    "reply".into(),
                );
                if held {
                    tokio::spawn(sending);
                } else {
                    sending.await;
                }
            }
        }
    };
    shared.record(JournalEntry::event(id, monotonic_ns(), &buffer, why));
}

/// Decodes and journals one request and lets the acquirer decide; returns the signed reply to
/// deliver and how.
fn decide(
    shared: &Shared,
    connection: &Connection,
    body: &[u8],
    t_ns: u64,
) -> Option<(Reply, Option<Action>)> {
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
    let reply = Reply::signed(shared, connection.id, decision.reply?)?;
    Some((reply, decision.delivery))
}
