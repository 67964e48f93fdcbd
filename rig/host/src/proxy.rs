//! Proxy mode: one terminal connection relayed to a real acquirer test host.
//!
//! Each terminal connection gets its own upstream connection; when the upstream cannot be
//! reached the terminal's connection is closed and the journal says why. Frames are split with
//! the spec's length prefix and decoded both ways, but relayed byte for byte: a frame that does
//! not decode is journalled with a note and forwarded as it is, as a proxy must be no stricter
//! than the wire. Requests are journalled `In` when they arrive, the upstream's replies `Out` when
//! they reach the terminal, so the journal has the simulator's shape.
//!
//! The fault knobs act per kind and STAN as in the simulator: `drop_request` keeps the request
//! from the upstream, `respond` answers in its place with a synthetic reply signed with the
//! host's key (the request is not forwarded, and nothing is booked), and every delivery knob
//! (`drop_reply`, `delay`, `duplicate`, `corrupt_mac`, `alter`, `close`, `reset`) waits for the
//! upstream's reply to the request and applies to it. The ledger books each upstream reply by the
//! simulator's rules, keyed on the request it answers: an observation of what the real host
//! approved, not its books. A request whose reply never comes back is not booked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posrig_iso8583::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::acquirer::reply_to;
use crate::clock::monotonic_ns;
use crate::delivery::{self, Connection, Reply};
use crate::journal::{Direction, JournalEntry};
use crate::knobs::{Action, Kind};
use crate::server::Shared;

/// How long the proxy tries to reach the upstream for a new terminal connection.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// How long the upstream may take to answer what is in flight and close, once the terminal's
/// side has ended.
const LINGER: Duration = Duration::from_secs(5);

/// A request forwarded upstream whose reply has not come back yet.
struct InFlight {
    /// The MTI its reply carries (0200 → 0210).
    reply_mti: String,
    /// Its field 11, which the reply repeats.
    stan: Option<String>,
    /// The request, which the booking keys on.
    request: Message,
    /// The delivery knob waiting for its reply.
    delivery: Option<Action>,
}

/// Requests in flight on one connection, in the order they were forwarded.
type Flights = Mutex<Vec<InFlight>>;

/// What becomes of a request from the terminal.
enum Route {
    /// Forwarded upstream byte for byte.
    Forward,
    /// Answered by the proxy with this reply, not forwarded.
    Answer(Message),
    /// Neither forwarded nor answered.
    Drop,
}

/// Relays one terminal connection to `upstream` until either side ends it.
pub(crate) async fn serve(shared: Arc<Shared>, terminal: TcpStream, id: u64, upstream: SocketAddr) {
    let _ = terminal.set_nodelay(true);
    let reached = tokio::time::timeout(CONNECT_PATIENCE, TcpStream::connect(upstream)).await;
    let upstream_stream = match reached {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return unreachable_upstream(&shared, id, format!("upstream {upstream}: {e}")),
        Err(_) => {
            let why = format!("upstream {upstream} did not answer within {CONNECT_PATIENCE:?}");
            return unreachable_upstream(&shared, id, why);
        }
    };
    let _ = upstream_stream.set_nodelay(true);
    let local = upstream_stream
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let note = format!("relayed to upstream {upstream} from {local}");
    shared.record(JournalEntry::event(id, monotonic_ns(), &[], note));
    let (terminal_reader, terminal_writer) = terminal.into_split();
    let (upstream_reader, upstream_writer) = upstream_stream.into_split();
    let connection = Connection::new(id, terminal_writer);
    let flights = Flights::default();
    let requests = forward_requests(&shared, &connection, terminal_reader, upstream_writer, &flights);
    let replies = forward_replies(&shared, &connection, upstream_reader, &flights);
    tokio::pin!(requests, replies);
    let why = tokio::select! {
        why = &mut replies => why,
        why = &mut requests => {
            // The upstream got a FIN: let it answer what is in flight before closing.
            shared.record(JournalEntry::event(id, monotonic_ns(), &[], why));
            match tokio::time::timeout(LINGER, &mut replies).await {
                Ok(why) => why,
                Err(_) => format!("upstream still open {LINGER:?} after the terminal's side ended: closed"),
            }
        }
    };
    connection.close().await;
    shared.record(JournalEntry::event(id, monotonic_ns(), &[], why));
}

/// Journals why the upstream could not be reached; the terminal's connection closes on return.
fn unreachable_upstream(shared: &Shared, id: u64, why: String) {
    let note = format!("{why}; closing the terminal's connection");
    shared.record(JournalEntry::event(id, monotonic_ns(), &[], note));
}

/// Reads the terminal's frames and forwards, answers or drops each; returns why it stopped.
async fn forward_requests(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    mut terminal: OwnedReadHalf,
    mut upstream: OwnedWriteHalf,
    flights: &Flights,
) -> String {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::select! {
            read = terminal.read(&mut chunk) => read,
            () = connection.ended.notified() => return "closed by the proxy (rule)".into(),
        };
        let t_ns = monotonic_ns();
        match read {
            Ok(0) => return "closed by the terminal".into(),
            Err(e) => return format!("terminal connection error: {e}"),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        while let Some((_, used)) = shared.codec.split_frame(&buffer) {
            let frame: Vec<u8> = buffer.drain(..used).collect();
            match route_request(shared, connection.id, &frame, t_ns, flights) {
                Route::Forward => {
                    if let Err(e) = upstream.write_all(&frame).await {
                        return format!("cannot forward to the upstream: {e}");
                    }
                }
                Route::Answer(message) => {
                    if let Some(reply) = Reply::signed(shared, connection.id, message) {
                        let note = "synthetic reply from the proxy (rule respond)";
                        delivery::send(shared, connection, &reply, note).await;
                    }
                }
                Route::Drop => {}
            }
        }
    }
}

/// Decodes and journals one framed request, applies the rule that matches it, and says where it
/// goes; a request forwarded is remembered with its delivery knob until its reply comes back.
fn route_request(shared: &Shared, connection: u64, frame: &[u8], t_ns: u64, flights: &Flights) -> Route {
    let body = &frame[shared.codec.spec().frame.length_prefix_bytes..];
    let request = match shared.codec.decode(body) {
        Ok(request) => request,
        Err(e) => {
            let note = format!("undecodable frame from the terminal, forwarded byte for byte: {e}");
            shared.record(JournalEntry::event(connection, t_ns, body, note));
            return Route::Forward;
        }
    };
    let kind = Kind::of(&request.mti, request.text(3));
    let action = kind.and_then(|kind| shared.acquirer().rules.take(kind, request.text(11)));
    let (route, note) = match action {
        Some(Action::DropRequest) => (Route::Drop, "not forwarded (rule drop_request)".to_string()),
        Some(Action::Respond { code }) => {
            let mut reply = reply_to(&request);
            reply.set(39, code.as_str());
            let note = format!("answered {code} by the proxy, not forwarded (rule respond)");
            (Route::Answer(reply), note)
        }
        delivery => {
            let note = match &delivery {
                Some(action) => format!("forwarded upstream; rule {action:?} waits for the reply"),
                None => "forwarded upstream".to_string(),
            };
            flights.lock().expect("flights lock").push(InFlight {
                reply_mti: request.reply().mti,
                stan: request.text(11).map(str::to_string),
                request: request.clone(),
                delivery,
            });
            (Route::Forward, note)
        }
    };
    shared.record(JournalEntry::message(
        Direction::In,
        connection,
        t_ns,
        &request,
        body,
        note,
    ));
    route
}

/// Reads the upstream's frames, books each reply and delivers it to the terminal under the
/// knob its request left; returns why it stopped.
async fn forward_replies(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    mut upstream: OwnedReadHalf,
    flights: &Flights,
) -> String {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = upstream.read(&mut chunk).await;
        let t_ns = monotonic_ns();
        match read {
            Ok(0) => return "closed by the upstream".into(),
            Err(e) => return format!("upstream connection error: {e}"),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        while let Some((_, used)) = shared.codec.split_frame(&buffer) {
            let frame: Vec<u8> = buffer.drain(..used).collect();
            let body = frame[shared.codec.spec().frame.length_prefix_bytes..].to_vec();
            let message = match shared.codec.decode(&body) {
                Ok(message) => message,
                Err(e) => {
                    let sent = match connection.write(&frame).await {
                        Ok(()) => "forwarded byte for byte".to_string(),
                        Err(why) => format!("could not be forwarded: {why}"),
                    };
                    let note = format!("undecodable frame from the upstream, {sent}: {e}");
                    shared.record(JournalEntry::event(connection.id, monotonic_ns(), &body, note));
                    continue;
                }
            };
            let (label, delivery) = book(shared, &message, t_ns, flights);
            let reply = Reply { message, body };
            if let Some(Action::DropReply) = delivery {
                let note = format!("{label}, not delivered (rule drop_reply)");
                let entry = JournalEntry::message(
                    Direction::Event,
                    connection.id,
                    t_ns,
                    &reply.message,
                    &reply.body,
                    note,
                );
                shared.record(entry);
                continue;
            }
            let held = delivery::is_held(delivery.as_ref());
            let sending = delivery::deliver(shared.clone(), connection.clone(), reply, delivery, label);
            if held {
                tokio::spawn(sending);
            } else {
                sending.await;
            }
        }
    }
}

/// Books an upstream reply against the request in flight it answers (same reply MTI and STAN,
/// oldest first); returns its journal label and the delivery knob waiting for it.
fn book(shared: &Shared, reply: &Message, t_ns: u64, flights: &Flights) -> (String, Option<Action>) {
    let flight = {
        let mut flights = flights.lock().expect("flights lock");
        flights
            .iter()
            .position(|f| f.reply_mti == reply.mti && f.stan.as_deref() == reply.text(11))
            .map(|at| flights.remove(at))
    };
    let Some(flight) = flight else {
        return ("upstream reply to no request in flight".into(), None);
    };
    let booked = shared
        .acquirer()
        .book_observed(&shared.codec, &flight.request, reply, t_ns);
    (
        format!("upstream reply; booked as seen: {booked}"),
        flight.delivery,
    )
}
