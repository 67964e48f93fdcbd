//! The control port: one JSON request per line, one JSON answer per line, so a test, a script or a
//! person with `nc` can change the host's knobs while it runs and read its ledger and journal.
//!
//! Requests (`op` names the operation):
//! `{"op":"status"}`, `{"op":"add_rule","rule":{"kind":"sale","stan":"000002","times":1,"action":"drop_reply"}}`,
//! `{"op":"clear_rules"}`, `{"op":"settings","settings":{"idempotent_reversals":false}}`,
//! `{"op":"ledger"}`, `{"op":"journal","since":0}`, `{"op":"reset"}`, and
//! `{"op":"watch","since":0}`, which streams every journal entry from `since` on, one per line,
//! for as long as the connection stays open.
//! Answers: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;

use crate::acquirer::Settings;
use crate::knobs::Rule;
use crate::server::Host;

/// One control request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Address, mode, settings, rules and journal length.
    Status,
    /// Add a fault rule.
    AddRule {
        /// The rule.
        rule: Rule,
    },
    /// Remove every rule.
    ClearRules,
    /// Replace the settings (absent keys take their defaults); refused when the mode cannot
    /// honour them.
    Settings {
        /// The new settings.
        settings: Settings,
    },
    /// The ledger.
    Ledger,
    /// Journal entries from `since` on.
    Journal {
        /// First journal position wanted.
        #[serde(default)]
        since: u64,
    },
    /// Stream journal entries from `since` on until the connection closes.
    Watch {
        /// First journal position wanted.
        #[serde(default)]
        since: u64,
    },
    /// Empty ledger, journal and rules; default settings.
    Reset,
}

/// Serves the control port until the runtime stops.
pub async fn serve(listener: TcpListener, host: Arc<Host>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_client(stream, host.clone()));
    }
}

async fn serve_client(stream: TcpStream, host: Arc<Host>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({"ok": false, "error": format!("not a control request: {e}")}),
            Ok(Request::Watch { since }) => {
                stream_journal(&host, since, &mut writer).await;
                return;
            }
            Ok(request) => match answer(&host, request) {
                Ok(result) => json!({"ok": true, "result": result}),
                Err(e) => json!({"ok": false, "error": e}),
            },
        };
        if write_line(&mut writer, &answer).await.is_err() {
            return;
        }
    }
}

/// Answers one request that is not a stream (everything but `watch`): the same operations for
/// the control port and for in-process callers such as the Python bindings.
pub fn answer(host: &Host, request: Request) -> Result<Value, String> {
    Ok(match request {
        Request::Status => json!({
            "listen": host.addr().to_string(),
            "mode": host.mode(),
            "settings": host.settings(),
            "rules": host.rules(),
            "journal_next": host.journal_next(),
        }),
        Request::AddRule { rule } => {
            host.add_rule(rule)?;
            json!(host.rules())
        }
        Request::ClearRules => {
            host.clear_rules();
            json!([])
        }
        Request::Settings { settings } => {
            host.set_settings(settings)?;
            json!(settings)
        }
        Request::Ledger => json!(host.ledger()),
        Request::Journal { since } => json!(host.journal(since)),
        Request::Reset => {
            host.reset();
            json!(null)
        }
        Request::Watch { .. } => return Err("watch is streamed, not answered".into()),
    })
}

async fn stream_journal(host: &Host, since: u64, writer: &mut tokio::net::tcp::OwnedWriteHalf) {
    let (backlog, mut feed) = host.watch(since);
    let mut next = since;
    for entry in backlog {
        next = entry.seq + 1;
        if write_line(writer, &json!(entry)).await.is_err() {
            return;
        }
    }
    loop {
        match feed.recv().await {
            Ok(entry) if entry.seq < next => continue,
            Ok(entry) => {
                next = entry.seq + 1;
                if write_line(writer, &json!(entry)).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => {
                for entry in host.journal(next) {
                    next = entry.seq + 1;
                    if write_line(writer, &json!(entry)).await.is_err() {
                        return;
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn write_line(writer: &mut tokio::net::tcp::OwnedWriteHalf, value: &Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    writer.write_all(line.as_bytes()).await
}
