//! `rigctl up`: runs the rig in the foreground and serves the other `rigctl` commands on its
//! Unix socket until Ctrl-C or SIGTERM, then leaves the terminal in the safe state.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use posrig_core::rig::Rig;
use serde_json::{json, Value};

use crate::protocol::Request;

/// How often a following stream looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Serves `rig` on `socket` until the process is told to stop.
pub fn serve(rig: Rig, socket: &Path) -> Result<(), String> {
    if UnixStream::connect(socket).is_ok() {
        return Err(format!("a rig is already running on {}", socket.display()));
    }
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let rig = Arc::new(rig);
    {
        // Client threads hold the rig only while they answer, so it can be dropped — and its
        // link and terminal torn down — when the rig stops.
        let rig = Arc::downgrade(&rig);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let rig = rig.clone();
                std::thread::spawn(move || serve_client(&rig, stream));
            }
        });
    }
    say(&format!(
        "rig {:?} running; link {:?}; control socket {}\n\
         Ctrl-C or SIGTERM stops it and leaves the terminal safe (power on, card out, link up)",
        rig_name(&rig),
        rig.link_kind(),
        socket.display()
    ));
    rig.runtime().block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    });
    let _ = std::fs::remove_file(socket);
    say("stopping: bringing the terminal to the safe state");
    let safe = rig.safe_state("rigctl stop").map_err(|e| e.to_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&rig) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(rig);
    safe
}

/// Prints a line for the person at the console; a closed stdout must not stop the rig.
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn rig_name(rig: &Rig) -> String {
    rig.profile().name.clone()
}

fn serve_client(rig: &Weak<Rig>, stream: UnixStream) {
    let Ok(reading) = stream.try_clone() else {
        return;
    };
    let mut writer = stream;
    for line in BufReader::new(reading).lines() {
        let Ok(line) = line else {
            return;
        };
        let request = match serde_json::from_str::<Request>(&line) {
            Ok(request) => request,
            Err(e) => {
                if send(
                    &mut writer,
                    &json!({"ok": false, "error": format!("not a rigctl request: {e}")}),
                )
                .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let keep_going = match request {
            Request::Console { since, follow } => stream_console(rig, since, follow, &mut writer),
            Request::Journal { since, follow } => stream_journal(rig, since, follow, &mut writer),
            other => match rig.upgrade() {
                Some(rig) => send(&mut writer, &answer(&rig, other)).is_ok(),
                None => false,
            },
        };
        if !keep_going {
            return;
        }
    }
}

fn answer(rig: &Rig, request: Request) -> Value {
    let outcome = match request {
        Request::Status => Ok(status(rig)),
        Request::Perform { action } => rig
            .perform(&action)
            .map(|done| json!({"took_us": (done.done_ns - done.started_ns) / 1000})),
        Request::PerformFor { action, hold_ms } => rig
            .perform_for(&action, Duration::from_millis(hold_ms))
            .map(|done| json!({"started_ns": done.started_ns})),
        Request::Type { text } => rig.console_write_line(&text).map(|()| Value::Null),
        Request::Console { .. } | Request::Journal { .. } => Ok(Value::Null),
    };
    match outcome {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

fn status(rig: &Rig) -> Value {
    let capabilities = rig.actuators().capabilities();
    let power = capabilities
        .power
        .as_ref()
        .map(|p| p.state().map_or_else(|e| e.to_string(), |s| s.to_string()));
    let card = capabilities.card.as_ref().map(|c| match c.present() {
        Ok(Some(card)) => card,
        Ok(None) => "none".into(),
        Err(e) => e.to_string(),
    });
    let link = capabilities.link.as_ref().map(|l| match l.is_up() {
        Ok(true) => "up".to_string(),
        Ok(false) => "down".to_string(),
        Err(e) => e.to_string(),
    });
    json!({
        "terminal": rig.profile().name,
        "power": power,
        "card": card,
        "link": link,
        "link_backend": format!("{:?}", rig.link_kind()).to_lowercase(),
        "host": rig.host().addr().to_string(),
        "console_lines": rig.console_log().mark(),
        "journal_entries": rig.host().journal(0).len(),
        "workdir": rig.workdir().display().to_string(),
    })
}

fn stream_console(rig: &Weak<Rig>, since: usize, follow: bool, writer: &mut UnixStream) -> bool {
    let mut next = since;
    loop {
        let Some(lines) = rig.upgrade().map(|rig| rig.console_log().lines()) else {
            return false;
        };
        for line in lines.iter().skip(next) {
            let value =
                json!({"t_ns": line.t_ns, "text": line.text, "event": line.event.as_ref().map(|e| &e.name)});
            if send(writer, &value).is_err() {
                return false;
            }
        }
        next = next.max(lines.len());
        if !follow {
            return send(writer, &json!({"ok": true, "end": next})).is_ok();
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn stream_journal(rig: &Weak<Rig>, since: u64, follow: bool, writer: &mut UnixStream) -> bool {
    let mut next = since;
    loop {
        let Some(entries) = rig.upgrade().map(|rig| rig.host().journal(next)) else {
            return false;
        };
        for entry in entries {
            next = entry.seq + 1;
            if send(writer, &json!(entry)).is_err() {
                return false;
            }
        }
        if !follow {
            return send(writer, &json!({"ok": true, "end": next})).is_ok();
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn send(writer: &mut UnixStream, value: &Value) -> std::io::Result<()> {
    writer.write_all(format!("{value}\n").as_bytes())
}
