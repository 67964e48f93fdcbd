//! Delivering a reply to a terminal under a rule's delivery knob (domain.md §6): as it is,
//! delayed, twice, with a corrupted MAC, with a field altered and signed again, or cut short by a
//! close or a reset. The simulator and the proxy deliver through this same code, and every byte
//! that reaches the terminal is journalled as it goes.

use std::sync::Arc;
use std::time::Duration;

use posrig_iso8583::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::clock::monotonic_ns;
use crate::journal::{Direction, JournalEntry};
use crate::knobs::{Action, AlteredField};
use crate::server::Shared;

/// One terminal connection: its write half and the means to end it from a rule.
pub(crate) struct Connection {
    /// The connection's number in the journal.
    pub id: u64,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    /// Notified when a rule ended the connection, so its reader stops.
    pub ended: Notify,
}

impl Connection {
    /// A connection writing to the terminal through `writer`.
    pub fn new(id: u64, writer: OwnedWriteHalf) -> Arc<Connection> {
        Arc::new(Connection {
            id,
            writer: tokio::sync::Mutex::new(Some(writer)),
            ended: Notify::new(),
        })
    }

    /// Writes `bytes` to the terminal as they are.
    pub async fn write(&self, bytes: &[u8]) -> Result<(), String> {
        match self.writer.lock().await.as_mut() {
            Some(w) => w.write_all(bytes).await.map_err(|e| e.to_string()),
            None => Err("the connection was already closed".to_string()),
        }
    }

    /// Closes the terminal's side of the connection (FIN) if a rule has not already ended it.
    pub async fn close(&self) {
        self.writer.lock().await.take();
    }
}

/// A reply on its way to a terminal: decoded, and the message body that goes on the wire.
pub(crate) struct Reply {
    /// The decoded reply.
    pub message: Message,
    /// Its encoded body, without the length prefix.
    pub body: Vec<u8>,
}

impl Reply {
    /// Encodes `message` signed with the host's key; when it cannot be encoded, journals why on
    /// `connection` and gives `None`.
    pub fn signed(shared: &Shared, connection: u64, mut message: Message) -> Option<Reply> {
        match shared.codec.encode_signed(&mut message, &shared.key) {
            Ok(body) => Some(Reply { message, body }),
            Err(e) => {
                let note = format!("reply could not be encoded, not sent: {e}");
                shared.record(JournalEntry::event(connection, monotonic_ns(), &[], note));
                None
            }
        }
    }
}

/// True when `delivery` holds the reply back: it must then run apart from the connection's
/// reader, which goes on with later messages meanwhile.
pub(crate) fn is_held(delivery: Option<&Action>) -> bool {
    matches!(delivery, Some(Action::Delay { .. }))
}

/// Sends `reply` to the terminal as `delivery` says; `label` names the reply in the journal
/// ("reply", or what the proxy made of an upstream reply). A dropped reply is not sent and not
/// journalled here: the request's journal line says so.
pub(crate) async fn deliver(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut reply: Reply,
    delivery: Option<Action>,
    label: String,
) {
    let (shared, connection) = (&*shared, &*connection);
    match delivery {
        None => send(shared, connection, &reply, &label).await,
        Some(Action::DropReply) => {}
        Some(Action::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            send(shared, connection, &reply, &format!("{label}, delayed {ms} ms")).await;
        }
        Some(Action::Duplicate) => {
            send(shared, connection, &reply, &label).await;
            let again = format!("{label}, sent again (rule duplicate)");
            send(shared, connection, &reply, &again).await;
        }
        Some(Action::CorruptMac) => {
            let mac_field = shared.codec.spec().mac.field;
            if !reply.message.has(mac_field) {
                let note = format!("{label} (exempt from MAC, nothing to corrupt)");
                send(shared, connection, &reply, &note).await;
                return;
            }
            let last = reply.body.len() - 1;
            reply.body[last] = if reply.body[last] == b'0' { b'1' } else { b'0' };
            let mac = reply.body[last - 7..].to_vec();
            reply.message.set(mac_field, mac);
            send(shared, connection, &reply, &format!("{label}, MAC corrupted")).await;
        }
        Some(Action::Alter { field }) => {
            alter(&mut reply.message, field);
            let Some(altered) = Reply::signed(shared, connection.id, reply.message) else {
                return;
            };
            let note = format!("{label}, {field:?} altered and signed again (rule alter)");
            send(shared, connection, &altered, &note).await;
        }
        Some(Action::Close { after_bytes }) => cut(shared, connection, &reply.body, after_bytes, false).await,
        Some(Action::Reset { after_bytes }) => cut(shared, connection, &reply.body, after_bytes, true).await,
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

/// Frames and writes `reply`, then journals it as sent (or why it was not).
pub(crate) async fn send(shared: &Shared, connection: &Connection, reply: &Reply, note: &str) {
    let framed = match shared.codec.frame(reply.body.clone()) {
        Ok(framed) => framed,
        Err(e) => {
            let note = format!("{note}: too long to frame, not sent: {e}");
            shared.record(JournalEntry::event(
                connection.id,
                monotonic_ns(),
                &reply.body,
                note,
            ));
            return;
        }
    };
    let outcome = connection.write(&framed).await;
    let t_ns = monotonic_ns();
    match outcome {
        Ok(()) => shared.record(JournalEntry::message(
            Direction::Out,
            connection.id,
            t_ns,
            &reply.message,
            &reply.body,
            note.to_string(),
        )),
        Err(e) => {
            let note = format!("{note} could not be delivered: {e}");
            shared.record(JournalEntry::event(connection.id, t_ns, &reply.body, note));
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
    if let Some(mut w) = connection.writer.lock().await.take() {
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
