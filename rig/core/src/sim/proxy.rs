//! A userspace TCP proxy between the terminal and the acquirer host: the terminal's [`Link`] and
//! [`NetworkImpairment`] when the rig has no privilege for network namespaces.
//!
//! The terminal connects to [`ProxyLink::addr`] instead of the host; every accepted connection
//! opens one connection to the host, and the proxy forwards whole ISO 8583 frames (a big-endian
//! length prefix, then that many bytes; `domain.md` §2) in both directions, so that delay, drop
//! and blackhole act per message rather than per TCP segment.
//!
//! The proxy runs on its own thread with its own tokio runtime, so its callers may be synchronous
//! (the capability traits are). Every control call (`down`, `up`, `reset_connections`) has taken
//! effect on the sockets when it returns.
//!
//! How it differs from a real cable or a netem qdisc:
//! - `down()` closes the listening socket, so a new connect is *refused* at once; behind a pulled
//!   cable it would time out instead.
//! - Frames that arrive while the link is down are read and discarded; behind a pulled cable TCP
//!   would retransmit them and they might still arrive after the cable is back.
//! - A close (FIN) or reset (RST) from one side is held while the link is down and passed on once
//!   it is up again, after the frames that preceded it.
//! - Impairments (delay, drop, blackhole) act on frames only; closes and resets are passed on
//!   (after the delay in force, to keep their order with the frames).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::capability::{Impairment, Link, NetworkImpairment};
use crate::error::{Result, RigError};

/// How the capability is named in errors.
const CAPABILITY: &str = "link (proxy)";

/// Frames waiting for delivery per direction of a connection before the proxy stops reading
/// from the sender (TCP back-pressure then does the rest).
const QUEUED_FRAMES_PER_DIRECTION: usize = 1024;

/// Largest single read from a socket.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The drop generator's seed until [`ProxyLink::seed`] is called: runs are reproducible by default.
const DEFAULT_SEED: u64 = 0x5EED_0000_8583;

/// One end of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The terminal (it connected to [`ProxyLink::addr`]).
    Terminal,
    /// The acquirer host (the proxy connected to it).
    Host,
}

impl Side {
    /// The other end of the connection.
    pub fn other(self) -> Side {
        match self {
            Side::Terminal => Side::Host,
            Side::Host => Side::Terminal,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Terminal => "terminal",
            Side::Host => "host",
        })
    }
}

/// Why the proxy discarded a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The link was down when the frame was read or when it was due for delivery.
    LinkDown,
    /// A blackhole impairment was in force.
    Blackhole,
    /// The drop probability in force came up.
    Chance,
}

/// What happened, in a [`ProxyEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyEventKind {
    /// The terminal connected from `terminal`; the proxy is now connecting to the host.
    Accepted {
        /// The terminal's address.
        terminal: SocketAddr,
    },
    /// The connection to the host is open; frames flow from now on.
    UpstreamConnected,
    /// The host could not be reached; the terminal's connection is reset.
    UpstreamFailed {
        /// Why the connect failed.
        reason: String,
    },
    /// A frame was read and is held for `delay` before it is forwarded.
    FrameDelayed {
        /// Who sent it.
        from: Side,
        /// Its size including the length prefix.
        bytes: usize,
        /// How long it is held.
        delay: Duration,
    },
    /// A frame was written to the other side.
    FrameForwarded {
        /// Who sent it.
        from: Side,
        /// Its size including the length prefix (a trailing incomplete frame counts what arrived).
        bytes: usize,
    },
    /// A frame was discarded.
    FrameDropped {
        /// Who sent it.
        from: Side,
        /// Its size including the length prefix.
        bytes: usize,
        /// Why it was discarded.
        reason: DropReason,
    },
    /// `by` closed its side of the connection (FIN); the close is passed on to the other side
    /// after the frames that preceded it.
    Closed {
        /// Who closed.
        by: Side,
    },
    /// `by` reset the connection or failed; the proxy resets both sides.
    Reset {
        /// Whose socket reported the reset or failure.
        by: Side,
        /// The error reported.
        reason: String,
    },
    /// [`NetworkImpairment::reset_connections`] reset this connection on both sides.
    ResetByRig,
}

/// Something the proxy did, as told to the observer set with [`ProxyLink::observe`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyEvent {
    /// When, on the rig's clock (`CLOCK_MONOTONIC`, nanoseconds; `posrig_host::monotonic_ns`).
    pub t_ns: u64,
    /// The connection concerned, numbered from 1 in the order the terminal connected.
    pub connection: u64,
    /// What happened.
    pub kind: ProxyEventKind,
}

/// A function told about every [`ProxyEvent`].
pub type ProxyObserver = Arc<dyn Fn(ProxyEvent) + Send + Sync>;

/// A frame-aware userspace TCP proxy between the terminal and the acquirer host, acting as the
/// terminal's [`Link`] and [`NetworkImpairment`] without any privilege.
///
/// Dropping it stops its thread and closes the listening socket and every connection (FIN).
pub struct ProxyLink {
    /// Where the terminal connects.
    addr: SocketAddr,
    /// State shared with the runtime thread.
    shared: Arc<Shared>,
    /// Requests to the supervisor task; `None` once dropped.
    commands: Option<mpsc::UnboundedSender<Command>>,
    /// The thread running the proxy's runtime; `None` once joined.
    runtime_thread: Option<JoinHandle<()>>,
    /// The runtime thread's id, to refuse control calls made from an observer.
    runtime_thread_id: ThreadId,
    /// Serialises `down`, `up`, `refuse_new_connections` and `reset_connections`.
    control: Mutex<()>,
    /// New connections are refused (the host behind is in maintenance).
    refusing: AtomicBool,
}

impl ProxyLink {
    /// Starts the proxy: listens on `listen` (port 0 picks a free port; see [`ProxyLink::addr`])
    /// and forwards every connection to `upstream`, in frames whose length prefix is
    /// `prefix_bytes` bytes long, big-endian (2 for ISO 8583 over TCP, `domain.md` §2).
    ///
    /// The link starts up, without impairment.
    pub fn start(listen: SocketAddr, upstream: SocketAddr, prefix_bytes: usize) -> Result<ProxyLink> {
        if !(1..=4).contains(&prefix_bytes) {
            return Err(RigError::actuator(
                CAPABILITY,
                "start",
                format!(
                    "a length prefix of {prefix_bytes} bytes is not supported; use 1 to 4 \
                     (ISO 8583 over TCP uses 2)"
                ),
            ));
        }
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| RigError::io(format!("{CAPABILITY}: listening on {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RigError::io(format!("{CAPABILITY}: reading the address bound for {listen}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RigError::io(format!("{CAPABILITY}: making {addr} non-blocking"), e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| RigError::io(format!("{CAPABILITY}: starting the proxy's runtime"), e))?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)
                .map_err(|e| RigError::io(format!("{CAPABILITY}: listening on {addr}"), e))?
        };

        let (link, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            prefix_bytes,
            upstream,
            link,
            impairment: Mutex::new(Impairment::default()),
            chance: Mutex::new(SplitMix64::new(DEFAULT_SEED)),
            observer: Mutex::new(None),
            next_connection: AtomicU64::new(1),
        });
        let (commands, command_queue) = mpsc::unbounded_channel();
        let supervisor = supervise(Arc::clone(&shared), listener, command_queue);
        let runtime_thread = thread::Builder::new()
            .name("posrig-proxy".to_string())
            .spawn(move || {
                runtime.block_on(supervisor);
                // The runtime drops here: every connection task is cancelled and its sockets closed.
            })
            .map_err(|e| RigError::io(format!("{CAPABILITY}: starting the proxy's thread"), e))?;
        let runtime_thread_id = runtime_thread.thread().id();
        Ok(ProxyLink {
            addr,
            shared,
            commands: Some(commands),
            runtime_thread: Some(runtime_thread),
            runtime_thread_id,
            control: Mutex::new(()),
            refusing: AtomicBool::new(false),
        })
    }

    /// Where the terminal connects: the listening address with the port actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy connects for every terminal connection: the acquirer host.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The impairment in force.
    pub fn impairment(&self) -> Impairment {
        lock(&self.shared.impairment).clone()
    }

    /// Restarts the generator that decides which frames a drop probability discards, from `seed`:
    /// the same seed and the same sequence of frames give the same drops. Until called, a fixed
    /// seed is used, so runs are reproducible by default.
    ///
    /// Both directions of every connection draw from the one generator, in the order frames are
    /// read; only a run where that order is fixed (e.g. one direction only) is fully reproducible.
    pub fn seed(&self, seed: u64) {
        *lock(&self.shared.chance) = SplitMix64::new(seed);
    }

    /// Calls `observer` for every frame forwarded, delayed or dropped and every connection event,
    /// replacing any earlier observer. It is called on the proxy's thread and must return
    /// quickly; a panic in it is contained. It must not call the proxy's `down`, `up` or
    /// `reset_connections` (they return an error if it does).
    pub fn observe(&self, observer: ProxyObserver) {
        *lock(&self.shared.observer) = Some(observer);
    }

    /// Sends `command` (made with a reply slot) to the supervisor and waits for its reply.
    fn request<T>(
        &self,
        action: &str,
        command: impl FnOnce(std_mpsc::SyncSender<T>) -> Command,
    ) -> Result<T> {
        if thread::current().id() == self.runtime_thread_id {
            return Err(RigError::actuator(
                CAPABILITY,
                action,
                "called from the proxy's own thread (an observer); call it from elsewhere",
            ));
        }
        let stopped = || {
            RigError::actuator(
                CAPABILITY,
                action,
                "the proxy's thread has stopped; start a new proxy (rebuild the rig)",
            )
        };
        let commands = self.commands.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = std_mpsc::sync_channel(1);
        commands.send(command(reply)).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())
    }

    /// True while the link is up.
    fn link_is_up(&self) -> bool {
        *self.shared.link.borrow()
    }
}

impl fmt::Debug for ProxyLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyLink")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("prefix_bytes", &self.shared.prefix_bytes)
            .field("up", &self.link_is_up())
            .field("impairment", &self.impairment())
            .finish_non_exhaustive()
    }
}

impl Link for ProxyLink {
    /// As if the cable were pulled: the listening socket is closed (a new connect is refused;
    /// behind a real pulled cable it would time out) and every open connection is black-holed
    /// (frames are read and discarded in both directions, sockets stay open, no FIN or RST).
    fn down(&self) -> Result<()> {
        let _serial = lock(&self.control);
        self.shared.link.send_replace(false);
        self.request("down", |done| Command::StopListening { done })
    }

    /// Listens again on the same address and port and forwards again on the connections that
    /// survived. Fails (and the link stays down) if something else took the port meanwhile.
    fn up(&self) -> Result<()> {
        let _serial = lock(&self.control);
        if self.link_is_up() {
            return Ok(());
        }
        if self.refusing.load(Ordering::SeqCst) {
            // The host behind refuses connections: the link is back, the listener stays closed.
            self.shared.link.send_replace(true);
            return Ok(());
        }
        self.listen_again()
    }

    /// True while the link is up.
    fn is_up(&self) -> Result<bool> {
        Ok(self.link_is_up())
    }
}

impl ProxyLink {
    /// While `refusing`, a new connect is refused at once, as by a host in maintenance; open
    /// connections carry on. The rig mirrors its host's maintenance here, so a terminal behind
    /// the proxy sees what it would see connecting to the host itself (a refused connect, not an
    /// accepted connection reset after its request was sent).
    pub fn refuse_new_connections(&self, refusing: bool) -> Result<()> {
        let _serial = lock(&self.control);
        if self.refusing.swap(refusing, Ordering::SeqCst) == refusing || !self.link_is_up() {
            return Ok(());
        }
        if refusing {
            self.request("refuse", |done| Command::StopListening { done })
        } else {
            self.listen_again()
        }
    }

    /// Binds the proxy's address again and hands the listener to the runtime (the control lock
    /// held by the caller).
    fn listen_again(&self) -> Result<()> {
        let addr = self.addr;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| RigError::io(format!("{CAPABILITY}: listening again on {addr}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RigError::io(format!("{CAPABILITY}: making {addr} non-blocking"), e))?;
        self.shared.link.send_replace(true);
        let listening = self.request("up", |done| Command::Listen { listener, done });
        match listening {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.shared.link.send_replace(false);
                Err(RigError::io(
                    format!("{CAPABILITY}: listening again on {addr}"),
                    e,
                ))
            }
            Err(e) => {
                self.shared.link.send_replace(false);
                Err(e)
            }
        }
    }
}

impl NetworkImpairment for ProxyLink {
    /// Replaces the impairment in force; it acts on frames read after the call (frames already
    /// held keep the delay they were given). `drop` must lie between 0 and 1.
    fn apply(&self, impairment: &Impairment) -> Result<()> {
        if !(0.0..=1.0).contains(&impairment.drop) {
            return Err(RigError::actuator(
                CAPABILITY,
                "apply impairment",
                format!("drop probability {} is not between 0 and 1", impairment.drop),
            ));
        }
        *lock(&self.shared.impairment) = impairment.clone();
        Ok(())
    }

    /// Resets every open connection on both sides (SO_LINGER 0, then close: an RST to the
    /// terminal and to the host), whether the link is up or down. Frames still held are lost.
    fn reset_connections(&self) -> Result<()> {
        let _serial = lock(&self.control);
        self.request("reset connections", |done| Command::ResetConnections { done })
    }
}

impl Drop for ProxyLink {
    fn drop(&mut self) {
        // Closing the command queue ends the supervisor; the runtime then drops every task.
        drop(self.commands.take());
        if let Some(runtime_thread) = self.runtime_thread.take() {
            if thread::current().id() != self.runtime_thread_id {
                let _ = runtime_thread.join();
            }
        }
    }
}

/// State shared between the [`ProxyLink`] handle and the runtime thread.
struct Shared {
    /// Length of the big-endian length prefix of every frame.
    prefix_bytes: usize,
    /// The acquirer host.
    upstream: SocketAddr,
    /// True while the link is up; connections subscribe to it.
    link: watch::Sender<bool>,
    /// The impairment in force.
    impairment: Mutex<Impairment>,
    /// Decides which frames the drop probability discards.
    chance: Mutex<SplitMix64>,
    /// Told about every event.
    observer: Mutex<Option<ProxyObserver>>,
    /// The next connection's number.
    next_connection: AtomicU64,
}

impl Shared {
    /// Tells the observer, if any, about `kind` on `connection`.
    fn emit(&self, connection: u64, kind: ProxyEventKind) {
        let observer = lock(&self.observer).clone();
        if let Some(observer) = observer {
            let event = ProxyEvent {
                t_ns: posrig_host::monotonic_ns(),
                connection,
                kind,
            };
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| observer(event)));
        }
    }

    /// Decides the fate of a frame just read: `Ok(delay)` to forward it after `delay`, `Err` to
    /// discard it.
    fn judge(&self) -> std::result::Result<Duration, DropReason> {
        if !*self.link.borrow() {
            return Err(DropReason::LinkDown);
        }
        let impairment = lock(&self.impairment).clone();
        if impairment.blackhole {
            return Err(DropReason::Blackhole);
        }
        if impairment.drop > 0.0 && lock(&self.chance).next_unit() < impairment.drop {
            return Err(DropReason::Chance);
        }
        Ok(impairment.delay)
    }

    /// The delay in force (for closes and resets, which keep their place behind the frames).
    fn delay(&self) -> Duration {
        lock(&self.impairment).delay
    }
}

/// Locks `mutex`, carrying on with the data if a holder panicked (every value here stays valid).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast generator that accepts any seed.
struct SplitMix64 {
    /// Advances by a fixed odd constant per draw.
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A request from the [`ProxyLink`] handle to the supervisor task, with the slot for its reply.
enum Command {
    /// Close the listening socket.
    StopListening {
        /// Told once the socket is closed.
        done: std_mpsc::SyncSender<()>,
    },
    /// Accept connections on `listener` (already bound and listening).
    Listen {
        /// The socket, bound to the proxy's address and non-blocking.
        listener: std::net::TcpListener,
        /// Told whether the runtime took the socket.
        done: std_mpsc::SyncSender<io::Result<()>>,
    },
    /// Reset every open connection and reply once all are closed.
    ResetConnections {
        /// Told once every connection is closed.
        done: std_mpsc::SyncSender<()>,
    },
}

/// What woke the supervisor.
enum Wakeup {
    /// A request from the handle; `None` once the handle is dropped.
    Command(Option<Command>),
    /// The terminal connected (or accepting failed).
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    /// A connection task finished.
    ConnectionEnded,
}

/// Owns the listening socket and the connection tasks; runs until the command queue closes.
async fn supervise(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let (reset_generation, _) = watch::channel(0u64);
    loop {
        let wakeup = tokio::select! {
            command = commands.recv() => Wakeup::Command(command),
            accepted = accept_next(&listener) => Wakeup::Accepted(accepted),
            Some(_) = connections.join_next(), if !connections.is_empty() => Wakeup::ConnectionEnded,
        };
        match wakeup {
            Wakeup::Command(None) => break,
            Wakeup::Command(Some(Command::StopListening { done })) => {
                drop(listener.take());
                let _ = done.send(());
            }
            Wakeup::Command(Some(Command::Listen {
                listener: bound,
                done,
            })) => {
                let listening = TcpListener::from_std(bound).map(|l| listener = Some(l));
                let _ = done.send(listening);
            }
            Wakeup::Command(Some(Command::ResetConnections { done })) => {
                reset_generation.send_modify(|generation| *generation += 1);
                while connections.join_next().await.is_some() {}
                let _ = done.send(());
            }
            Wakeup::Accepted(Ok((terminal, peer))) => {
                let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                let reset = reset_generation.subscribe();
                connections.spawn(serve_connection(Arc::clone(&shared), id, terminal, peer, reset));
            }
            Wakeup::Accepted(Err(_)) => {
                // Out of descriptors or a connection aborted in the backlog: wait a little rather
                // than spin, then accept again.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Wakeup::ConnectionEnded => {}
        }
    }
}

/// The next connection on `listener`, or never if there is no listener (the link is down).
async fn accept_next(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// How a connection ended.
enum Ending {
    /// Both sides closed; the sockets close normally.
    Closed,
    /// One side reset or failed: reset both.
    Reset,
    /// The rig asked for every connection to be reset.
    ResetByRig,
    /// The host could not be reached: reset the terminal.
    UpstreamFailed(io::Error),
}

/// Serves one terminal connection: connects to the host, forwards frames both ways, and ends
/// the connection the way it ended on the other side or the way the rig asked.
async fn serve_connection(
    shared: Arc<Shared>,
    id: u64,
    mut terminal: TcpStream,
    peer: SocketAddr,
    mut reset: watch::Receiver<u64>,
) {
    shared.emit(id, ProxyEventKind::Accepted { terminal: peer });
    let _ = terminal.set_nodelay(true);
    let mut host: Option<TcpStream> = None;
    let ending = tokio::select! {
        biased;
        () = reset_requested(&mut reset) => Ending::ResetByRig,
        ending = connect_and_forward(&shared, id, &mut terminal, &mut host) => ending,
    };
    match ending {
        Ending::Closed => {}
        Ending::Reset => {
            reset_on_close(&terminal);
            if let Some(host) = &host {
                reset_on_close(host);
            }
        }
        Ending::ResetByRig => {
            shared.emit(id, ProxyEventKind::ResetByRig);
            reset_on_close(&terminal);
            if let Some(host) = &host {
                reset_on_close(host);
            }
        }
        Ending::UpstreamFailed(e) => {
            shared.emit(
                id,
                ProxyEventKind::UpstreamFailed {
                    reason: e.to_string(),
                },
            );
            reset_on_close(&terminal);
        }
    }
    // `terminal` and `host` close here: with an RST where SO_LINGER 0 was set, a FIN otherwise.
}

/// Completes when the rig asks for every connection to be reset; never if the supervisor is gone.
async fn reset_requested(reset: &mut watch::Receiver<u64>) {
    if reset.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sets SO_LINGER to 0 so that closing `stream` sends an RST and discards unsent data.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor belongs to `stream`, alive for the call; the option value is a
    // properly sized `linger` we own.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Connects to the host (keeping the stream in `host` so the caller can reset it), then forwards
/// frames both ways until both sides have closed or one has reset.
async fn connect_and_forward(
    shared: &Shared,
    id: u64,
    terminal: &mut TcpStream,
    host: &mut Option<TcpStream>,
) -> Ending {
    let host = match TcpStream::connect(shared.upstream).await {
        Ok(stream) => host.insert(stream),
        Err(e) => return Ending::UpstreamFailed(e),
    };
    let _ = host.set_nodelay(true);
    shared.emit(id, ProxyEventKind::UpstreamConnected);
    let (terminal_reader, terminal_writer) = terminal.split();
    let (host_reader, host_writer) = host.split();
    let to_host = forward(shared, id, Side::Terminal, terminal_reader, host_writer);
    let to_terminal = forward(shared, id, Side::Host, host_reader, terminal_writer);
    match tokio::try_join!(to_host, to_terminal) {
        Ok(_) => Ending::Closed,
        Err(ResetBoth) => Ending::Reset,
    }
}

/// Returned when the connection must be reset on both sides.
struct ResetBoth;

/// What the reader hands the writer of one direction.
enum Delivery {
    /// Bytes to write (a whole frame, or what arrived of the last one before the sender ended).
    Frame(Vec<u8>),
    /// The sender closed: close towards the receiver.
    Close,
    /// The sender reset or failed: reset both sides.
    Reset,
}

/// Forwards one direction of a connection, from `from` to the other side.
async fn forward<R, W>(
    shared: &Shared,
    id: u64,
    from: Side,
    reader: R,
    writer: W,
) -> std::result::Result<(), ResetBoth>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, deliveries) = mpsc::channel(QUEUED_FRAMES_PER_DIRECTION);
    let reading = async {
        read_frames(shared, id, from, reader, queue).await;
        Ok(())
    };
    let writing = deliver(shared, id, from, deliveries, writer);
    tokio::try_join!(reading, writing).map(|_| ())
}

/// Reads frames from `from`, judges each and queues the survivors for delivery; queues the
/// sender's close or reset last.
async fn read_frames<R>(
    shared: &Shared,
    id: u64,
    from: Side,
    mut reader: R,
    queue: mpsc::Sender<(Instant, Delivery)>,
) where
    R: AsyncRead + Unpin,
{
    loop {
        let (frame, end) = read_frame(&mut reader, shared.prefix_bytes).await;
        if !frame.is_empty() {
            let bytes = frame.len();
            match shared.judge() {
                Err(reason) => shared.emit(id, ProxyEventKind::FrameDropped { from, bytes, reason }),
                Ok(delay) => {
                    if !delay.is_zero() {
                        shared.emit(id, ProxyEventKind::FrameDelayed { from, bytes, delay });
                    }
                    if queue
                        .send((Instant::now() + delay, Delivery::Frame(frame)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let ending = match end {
            None => continue,
            Some(Ok(())) => {
                shared.emit(id, ProxyEventKind::Closed { by: from });
                Delivery::Close
            }
            Some(Err(e)) => {
                shared.emit(
                    id,
                    ProxyEventKind::Reset {
                        by: from,
                        reason: e.to_string(),
                    },
                );
                Delivery::Reset
            }
        };
        let _ = queue.send((Instant::now() + shared.delay(), ending)).await;
        return;
    }
}

/// Reads one frame (prefix included). Returns the bytes read and, when the sender ended before
/// or inside the frame, how it ended (`Ok` for a close, `Err` for a reset or failure); the bytes
/// are then what arrived of the incomplete frame, possibly none.
async fn read_frame<R>(reader: &mut R, prefix_bytes: usize) -> (Vec<u8>, Option<io::Result<()>>)
where
    R: AsyncRead + Unpin,
{
    let mut frame = Vec::new();
    match read_until_length(reader, &mut frame, prefix_bytes).await {
        Ok(true) => {}
        Ok(false) => return (frame, Some(Ok(()))),
        Err(e) => return (frame, Some(Err(e))),
    }
    let length = frame
        .iter()
        .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
    match read_until_length(reader, &mut frame, prefix_bytes + length).await {
        Ok(true) => (frame, None),
        Ok(false) => (frame, Some(Ok(()))),
        Err(e) => (frame, Some(Err(e))),
    }
}

/// Reads into `buffer` until it holds `length` bytes: `Ok(true)` when it does, `Ok(false)` if
/// the sender closed first; what arrived stays in `buffer` either way, and on error.
async fn read_until_length<R>(reader: &mut R, buffer: &mut Vec<u8>, length: usize) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
{
    while buffer.len() < length {
        let start = buffer.len();
        let end = length.min(start + READ_CHUNK_BYTES);
        buffer.resize(end, 0);
        let read = reader.read(&mut buffer[start..end]).await;
        match read {
            Ok(0) => {
                buffer.truncate(start);
                return Ok(false);
            }
            Ok(n) => buffer.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buffer.truncate(start),
            Err(e) => {
                buffer.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(true)
}

/// Writes the frames of one direction to the receiving side when they are due, in order;
/// passes on the sender's close (FIN) or reset once the link is up.
async fn deliver<W>(
    shared: &Shared,
    id: u64,
    from: Side,
    mut deliveries: mpsc::Receiver<(Instant, Delivery)>,
    mut writer: W,
) -> std::result::Result<(), ResetBoth>
where
    W: AsyncWrite + Unpin,
{
    let mut link = shared.link.subscribe();
    // Frames are delivered in the order they were read: one due later than its successor (the
    // delay was lowered meanwhile) holds the successor back, so order is kept.
    while let Some((due, delivery)) = deliveries.recv().await {
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        match delivery {
            Delivery::Frame(frame) => {
                let bytes = frame.len();
                if !*link.borrow_and_update() {
                    let reason = DropReason::LinkDown;
                    shared.emit(id, ProxyEventKind::FrameDropped { from, bytes, reason });
                    continue;
                }
                if let Err(e) = writer.write_all(&frame).await {
                    let by = from.other();
                    shared.emit(
                        id,
                        ProxyEventKind::Reset {
                            by,
                            reason: e.to_string(),
                        },
                    );
                    return Err(ResetBoth);
                }
                shared.emit(id, ProxyEventKind::FrameForwarded { from, bytes });
            }
            Delivery::Close => {
                let _ = link.wait_for(|up| *up).await;
                let _ = writer.shutdown().await;
                return Ok(());
            }
            Delivery::Reset => {
                let _ = link.wait_for(|up| *up).await;
                return Err(ResetBoth);
            }
        }
    }
    Ok(())
}
