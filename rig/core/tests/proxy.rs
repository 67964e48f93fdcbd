//! The userspace proxy link: frames pass unchanged, impairments act per frame, the link goes down
//! and up, connections reset. No privilege needed: everything runs on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use posrig_core::capability::{Impairment, Link, NetworkImpairment};
use posrig_core::sim::proxy::{DropReason, ProxyEvent, ProxyEventKind, ProxyLink, Side};

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a test watches for something that should not happen.
const QUIET: Duration = Duration::from_millis(300);

/// `body` with its 2-byte big-endian length prefix.
fn frame(body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(body.len()).expect("test bodies fit a 2-byte prefix");
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    framed
}

/// Reads one framed message and returns its body.
fn read_body(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// How a host-side connection ended.
#[derive(Debug, PartialEq)]
enum HostEnd {
    /// The proxy closed it (EOF).
    Closed,
    /// The proxy reset it, or reading failed otherwise.
    Failed(io::ErrorKind),
}

/// A stand-in acquirer host. It records every frame body it receives and, when it replies,
/// answers each with `re:` + the body. `slow` is answered after 300 ms; `bye` is answered and
/// the connection closed; `cut` is answered with the first 4 bytes of the reply, then an RST.
struct Host {
    addr: SocketAddr,
    received: Receiver<Vec<u8>>,
    ended: Receiver<HostEnd>,
}

impl Host {
    fn start(replies: bool) -> Host {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test host");
        let addr = listener.local_addr().expect("test host address");
        let (received_tx, received) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let received_tx = received_tx.clone();
                let ended_tx = ended_tx.clone();
                thread::spawn(move || serve_host_connection(stream, replies, received_tx, ended_tx));
            }
        });
        Host {
            addr,
            received,
            ended,
        }
    }

    /// The bodies received within `QUIET` (expected to be none).
    fn received_quietly(&self) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + QUIET;
        let mut bodies = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.received.recv_timeout(left) {
                Ok(body) => bodies.push(body),
                Err(_) => break,
            }
        }
        bodies
    }
}

fn serve_host_connection(
    mut stream: TcpStream,
    replies: bool,
    received: Sender<Vec<u8>>,
    ended: Sender<HostEnd>,
) {
    loop {
        let body = match read_body(&mut stream) {
            Ok(body) => body,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let _ = ended.send(HostEnd::Closed);
                return;
            }
            Err(e) => {
                let _ = ended.send(HostEnd::Failed(e.kind()));
                return;
            }
        };
        let _ = received.send(body.clone());
        if !replies {
            continue;
        }
        if body == b"slow" {
            thread::sleep(QUIET);
        }
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&body);
        if body == b"cut" {
            let _ = stream.write_all(&frame(&reply)[..4]);
            thread::sleep(Duration::from_millis(50));
            reset_on_close(&stream);
            return;
        }
        if stream.write_all(&frame(&reply)).is_err() {
            return;
        }
        if body == b"bye" {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Sets SO_LINGER 0 so that closing `stream` sends an RST.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid descriptor and a properly sized option value we own.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0, "SO_LINGER");
}

/// A proxy on a free port of 127.0.0.1 in front of `host`.
fn proxy_for(host: &Host) -> ProxyLink {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    ProxyLink::start(listen, host.addr, 2).expect("start the proxy")
}

/// A terminal connection to the proxy.
fn terminal(proxy: &ProxyLink) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    stream
}

/// Sends `body` framed and returns the reply's body.
fn exchange(stream: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    stream.write_all(&frame(body)).expect("send a frame");
    read_body(stream).expect("a reply frame")
}

/// `re:` + `body`.
fn reply_to(body: &[u8]) -> Vec<u8> {
    [b"re:".as_slice(), body].concat()
}

/// Asserts that nothing arrives on `stream` for `QUIET`.
fn assert_silent(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(QUIET)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        other => panic!("expected silence with the connection open, got {other:?}"),
    }
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
}

/// Records every event the proxy reports.
fn record_events(proxy: &ProxyLink) -> Arc<Mutex<Vec<ProxyEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    proxy.observe(Arc::new(move |event| sink.lock().expect("events").push(event)));
    events
}

/// Waits until `done` holds over the events recorded so far.
fn wait_for_events(events: &Mutex<Vec<ProxyEvent>>, what: &str, done: impl Fn(&[ProxyEvent]) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done(&events.lock().expect("events")) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Frames from `side` forwarded and dropped (for any reason) so far.
fn judged(events: &[ProxyEvent], side: Side) -> (usize, usize) {
    let forwarded = events
        .iter()
        .filter(|e| matches!(e.kind, ProxyEventKind::FrameForwarded { from, .. } if from == side))
        .count();
    let dropped = events
        .iter()
        .filter(|e| matches!(e.kind, ProxyEventKind::FrameDropped { from, .. } if from == side))
        .count();
    (forwarded, dropped)
}

#[test]
fn frames_pass_unchanged_in_both_directions() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);

    let large: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    for body in [b"0200 purchase".to_vec(), Vec::new(), large] {
        assert_eq!(exchange(&mut stream, &body), reply_to(&body));
        assert_eq!(
            host.received.recv_timeout(PATIENCE).expect("host got the frame"),
            body
        );
    }

    // A frame written in pieces still crosses as one frame.
    let framed = frame(b"0400 reversal");
    stream.write_all(&framed[..1]).expect("send");
    thread::sleep(Duration::from_millis(50));
    stream.write_all(&framed[1..6]).expect("send");
    thread::sleep(Duration::from_millis(50));
    stream.write_all(&framed[6..]).expect("send");
    assert_eq!(read_body(&mut stream).expect("reply"), reply_to(b"0400 reversal"));
    assert_eq!(
        host.received.recv_timeout(PATIENCE).expect("host got it"),
        b"0400 reversal"
    );
}

#[test]
fn a_close_by_the_host_reaches_the_terminal() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);
    assert_eq!(exchange(&mut stream, b"bye"), reply_to(b"bye"));
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).expect("a clean end of stream"), 0);
}

#[test]
fn a_close_by_the_terminal_reaches_the_host() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);
    assert_eq!(exchange(&mut stream, b"hello"), reply_to(b"hello"));
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(
        host.ended.recv_timeout(PATIENCE).expect("the host saw the close"),
        HostEnd::Closed
    );
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).expect("the host's close comes back"), 0);
}

#[test]
fn a_reset_by_the_host_reaches_the_terminal_after_its_bytes() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let events = record_events(&proxy);
    let mut stream = terminal(&proxy);
    stream.write_all(&frame(b"cut")).expect("send");
    let expected = &frame(&reply_to(b"cut"))[..4];
    let mut received = Vec::new();
    let mut buffer = [0u8; 16];
    let ending = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break None,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    // The bytes usually arrive before the RST; if the RST overtakes them the kernel discards them.
    assert!(expected.starts_with(&received), "got {received:?}");
    assert!(
        matches!(ending, None | Some(io::ErrorKind::ConnectionReset)),
        "ended with {ending:?}"
    );
    wait_for_events(&events, "the fragment and the reset", |events| {
        let fragment = events.iter().any(|e| {
            matches!(
                e.kind,
                ProxyEventKind::FrameForwarded {
                    from: Side::Host,
                    bytes: 4
                }
            )
        });
        let reset = events
            .iter()
            .any(|e| matches!(e.kind, ProxyEventKind::Reset { by: Side::Host, .. }));
        fragment && reset
    });
}

#[test]
fn delay_holds_each_frame_and_keeps_order() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let events = record_events(&proxy);
    let mut stream = terminal(&proxy);
    let delay = Duration::from_millis(200);
    proxy
        .apply(&Impairment {
            delay,
            ..Impairment::default()
        })
        .expect("apply");

    let sent = Instant::now();
    for body in [b"one".as_slice(), b"two", b"three"] {
        stream.write_all(&frame(body)).expect("send");
    }
    for body in [b"one".as_slice(), b"two", b"three"] {
        assert_eq!(read_body(&mut stream).expect("reply"), reply_to(body));
    }
    // Held once on the way to the host and once on the way back.
    assert!(
        sent.elapsed() >= 2 * delay,
        "replies came after {:?}",
        sent.elapsed()
    );
    let delayed = events
        .lock()
        .expect("events")
        .iter()
        .filter(|e| matches!(e.kind, ProxyEventKind::FrameDelayed { delay: d, .. } if d == delay))
        .count();
    assert_eq!(delayed, 6);

    proxy.clear().expect("clear");
    assert_eq!(proxy.impairment(), Impairment::default());
    assert_eq!(exchange(&mut stream, b"four"), reply_to(b"four"));
}

#[test]
fn drop_all_discards_every_frame_but_keeps_the_connection() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);
    assert_eq!(exchange(&mut stream, b"before"), reply_to(b"before"));
    assert_eq!(
        host.received.recv_timeout(PATIENCE).expect("host got it"),
        b"before"
    );

    proxy
        .apply(&Impairment {
            drop: 1.0,
            ..Impairment::default()
        })
        .expect("apply");
    for i in 0..10u8 {
        stream.write_all(&frame(&[i])).expect("the connection stays open");
    }
    assert_silent(&mut stream);
    assert!(host.received_quietly().is_empty());

    proxy.clear().expect("clear");
    assert_eq!(exchange(&mut stream, b"after"), reply_to(b"after"));
}

#[test]
fn drop_none_discards_nothing() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);
    proxy
        .apply(&Impairment {
            drop: 0.0,
            ..Impairment::default()
        })
        .expect("apply");
    for i in 0..100u8 {
        stream.write_all(&frame(&[i])).expect("send");
    }
    for i in 0..100u8 {
        assert_eq!(read_body(&mut stream).expect("every reply"), reply_to(&[i]));
    }
}

#[test]
fn drop_half_with_a_seed_discards_some_but_not_all() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let events = record_events(&proxy);
    let mut stream = terminal(&proxy);
    proxy.seed(8583);
    proxy
        .apply(&Impairment {
            drop: 0.5,
            ..Impairment::default()
        })
        .expect("apply");

    for i in 0..200u16 {
        stream.write_all(&frame(&i.to_be_bytes())).expect("send");
    }
    wait_for_events(&events, "200 frames from the terminal", |events| {
        let (forwarded, dropped) = judged(events, Side::Terminal);
        forwarded + dropped == 200
    });
    let (to_host, dropped_to_host) = judged(&events.lock().expect("events"), Side::Terminal);
    assert!(
        dropped_to_host > 0 && to_host > 0,
        "{dropped_to_host} of 200 dropped"
    );

    // Every frame the host got was answered; wait until the proxy judged every answer.
    let mut at_host = 0;
    while at_host < to_host {
        host.received
            .recv_timeout(PATIENCE)
            .expect("a frame the proxy forwarded");
        at_host += 1;
    }
    wait_for_events(&events, "the answers", |events| {
        let (forwarded, dropped) = judged(events, Side::Host);
        forwarded + dropped == to_host
    });
    let (to_terminal, _) = judged(&events.lock().expect("events"), Side::Host);
    assert!(to_terminal < to_host, "the answers are dropped too");
    for _ in 0..to_terminal {
        let reply = read_body(&mut stream).expect("a forwarded answer");
        assert!(reply.starts_with(b"re:"));
    }
    assert_silent(&mut stream);
}

#[test]
fn the_same_seed_drops_the_same_frames() {
    fn run(seed: u64) -> BTreeSet<Vec<u8>> {
        let host = Host::start(false);
        let proxy = proxy_for(&host);
        let events = record_events(&proxy);
        let mut stream = terminal(&proxy);
        proxy.seed(seed);
        proxy
            .apply(&Impairment {
                drop: 0.3,
                ..Impairment::default()
            })
            .expect("apply");
        for i in 0..100u16 {
            stream.write_all(&frame(&i.to_be_bytes())).expect("send");
        }
        wait_for_events(&events, "100 frames", |events| {
            let (forwarded, dropped) = judged(events, Side::Terminal);
            forwarded + dropped == 100
        });
        let (forwarded, _) = judged(&events.lock().expect("events"), Side::Terminal);
        (0..forwarded)
            .map(|_| host.received.recv_timeout(PATIENCE).expect("forwarded"))
            .collect()
    }
    let first = run(42);
    assert!(
        !first.is_empty() && first.len() < 100,
        "{} of 100 kept",
        first.len()
    );
    assert_eq!(first, run(42));
}

#[test]
fn blackhole_discards_everything_until_cleared() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let events = record_events(&proxy);
    let mut stream = terminal(&proxy);
    proxy
        .apply(&Impairment {
            blackhole: true,
            ..Impairment::default()
        })
        .expect("apply");
    stream
        .write_all(&frame(b"lost"))
        .expect("the connection stays open");
    assert_silent(&mut stream);
    assert!(host.received_quietly().is_empty());
    assert!(events.lock().expect("events").iter().any(|e| matches!(
        e.kind,
        ProxyEventKind::FrameDropped {
            from: Side::Terminal,
            reason: DropReason::Blackhole,
            ..
        }
    )));

    proxy.clear().expect("clear");
    assert_eq!(exchange(&mut stream, b"found"), reply_to(b"found"));
}

#[test]
fn reset_connections_resets_both_sides() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = terminal(&proxy);
    assert_eq!(exchange(&mut stream, b"hello"), reply_to(b"hello"));

    proxy.reset_connections().expect("reset");
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        // Some kernels report the end of stream first.
        Ok(n) => assert_eq!(n, 0, "no more bytes after a reset"),
    }
    // Nothing else ever arrives.
    let _ = stream.write_all(&frame(b"anyone?"));
    assert!(!matches!(stream.read(&mut buffer), Ok(n) if n > 0));
    // Linux reports `Failed(ConnectionReset)`; any end will do.
    assert!(
        host.ended.recv_timeout(PATIENCE).is_ok(),
        "the host's connection ended"
    );

    // The proxy still takes new connections.
    let mut again = terminal(&proxy);
    assert_eq!(exchange(&mut again, b"again"), reply_to(b"again"));
}

#[test]
fn down_refuses_and_blackholes_then_up_restores() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let addr = proxy.addr();
    let mut old = terminal(&proxy);
    assert_eq!(exchange(&mut old, b"before"), reply_to(b"before"));
    assert_eq!(
        host.received.recv_timeout(PATIENCE).expect("host got it"),
        b"before"
    );
    assert!(proxy.is_up().expect("is_up"));

    // The host answers "slow" after the link has gone down: the answer is lost.
    old.write_all(&frame(b"slow")).expect("send");
    assert_eq!(
        host.received.recv_timeout(PATIENCE).expect("host got it"),
        b"slow"
    );
    proxy.down().expect("down");
    assert!(!proxy.is_up().expect("is_up"));

    let refused = TcpStream::connect_timeout(&addr, PATIENCE).expect_err("connect while down");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    old.write_all(&frame(b"during"))
        .expect("the connection stays open");
    assert_silent(&mut old);
    assert!(host.received_quietly().is_empty());
    assert!(
        matches!(host.ended.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the host's connection stays open"
    );

    proxy.up().expect("up");
    assert!(proxy.is_up().expect("is_up"));
    assert_eq!(proxy.addr(), addr);
    let mut new = terminal(&proxy);
    assert_eq!(exchange(&mut new, b"new"), reply_to(b"new"));
    assert_eq!(exchange(&mut old, b"after"), reply_to(b"after"));

    // Idempotent both ways.
    proxy.up().expect("up twice");
    proxy.down().expect("down");
    proxy.down().expect("down twice");
    proxy.up().expect("up");
    assert_eq!(exchange(&mut old, b"still"), reply_to(b"still"));
}

#[test]
fn a_host_that_cannot_be_reached_resets_the_terminal() {
    let unreachable = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
        // Closed here: nothing listens on this port any more.
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let proxy = ProxyLink::start(listen, unreachable, 2).expect("start");
    let events = record_events(&proxy);
    let mut stream = terminal(&proxy);
    let mut buffer = [0u8; 8];
    assert!(!matches!(stream.read(&mut buffer), Ok(n) if n > 0));
    wait_for_events(&events, "the failed connect", |events| {
        events
            .iter()
            .any(|e| matches!(e.kind, ProxyEventKind::UpstreamFailed { .. }))
    });
}

#[test]
fn bad_settings_are_refused() {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("address");
    assert!(ProxyLink::start(listen, upstream, 0).is_err());
    assert!(ProxyLink::start(listen, upstream, 5).is_err());
    let proxy = ProxyLink::start(listen, upstream, 2).expect("start");
    for drop in [-0.1, 1.5, f64::NAN] {
        assert!(proxy
            .apply(&Impairment {
                drop,
                ..Impairment::default()
            })
            .is_err());
    }
    assert_eq!(proxy.impairment(), Impairment::default());
}

#[test]
fn dropping_the_proxy_closes_everything() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let addr = proxy.addr();
    let mut stream = terminal(&proxy);
    assert_eq!(exchange(&mut stream, b"hello"), reply_to(b"hello"));
    drop(proxy);
    let mut buffer = [0u8; 8];
    assert!(!matches!(stream.read(&mut buffer), Ok(n) if n > 0));
    assert!(
        host.ended.recv_timeout(PATIENCE).is_ok(),
        "the host's connection ended"
    );
    assert!(TcpStream::connect_timeout(&addr, PATIENCE).is_err());
}

#[tokio::test]
async fn an_async_caller_can_drive_the_proxy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut stream = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    stream.write_all(&frame(b"async")).await.expect("send");
    let mut reply = vec![0u8; frame(&reply_to(b"async")).len()];
    stream.read_exact(&mut reply).await.expect("reply");
    assert_eq!(reply, frame(&reply_to(b"async")));
    proxy.down().expect("down");
    proxy.up().expect("up");
    proxy.reset_connections().expect("reset");
    drop(proxy);
}

#[test]
fn refusing_new_connections_refuses_at_once_and_keeps_open_ones_going() {
    let host = Host::start(true);
    let proxy = proxy_for(&host);
    let mut open = terminal(&proxy);
    assert_eq!(exchange(&mut open, b"before"), reply_to(b"before"));

    proxy.refuse_new_connections(true).expect("refuse");
    let refused = TcpStream::connect(proxy.addr()).expect_err("a new connect is refused");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "{refused}");
    assert_eq!(
        exchange(&mut open, b"during"),
        reply_to(b"during"),
        "open connections carry on"
    );
    // A link flap meanwhile does not open the door again.
    proxy.down().expect("down");
    proxy.up().expect("up");
    assert!(
        TcpStream::connect(proxy.addr()).is_err(),
        "still refused after the flap"
    );

    proxy.refuse_new_connections(false).expect("accept again");
    let mut fresh = terminal(&proxy);
    assert_eq!(exchange(&mut fresh, b"after"), reply_to(b"after"));
}
