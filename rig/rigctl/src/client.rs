//! The commands that talk to a running rig: send one request, print what comes back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::Value;

use crate::protocol::Request;

/// Sends `request` to the rig on `socket` and prints the answer (or the stream) as it comes.
pub fn ask(socket: &Path, request: &Request) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "no rig is running on {} ({e}); start one with `rigctl up`",
            socket.display()
        )
    })?;
    let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("cannot send to the rig: {e}"))?;
    let streaming = matches!(request, Request::Console { .. } | Request::Journal { .. });
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("the rig stopped answering: {e}"))?;
        let value: Value =
            serde_json::from_str(&line).map_err(|e| format!("unreadable answer {line:?}: {e}"))?;
        if value.get("ok") == Some(&Value::Bool(false)) {
            return Err(value["error"].as_str().unwrap_or("the rig refused").to_string());
        }
        if streaming && value.get("ok").is_some() {
            return Ok(());
        }
        print_item(request, &value);
        if !streaming {
            return Ok(());
        }
    }
    Ok(())
}

fn print_item(request: &Request, value: &Value) {
    match request {
        Request::Console { .. } => println!("{}", value["text"].as_str().unwrap_or_default()),
        Request::Journal { .. } => println!(
            "{:>6} {:<5} {} stan={} rc={} {}",
            value["seq"],
            value["direction"].as_str().unwrap_or_default(),
            value["mti"].as_str().unwrap_or("----"),
            value["stan"].as_str().unwrap_or("-"),
            value["fields"]["39"].as_str().unwrap_or("-"),
            value["note"].as_str().unwrap_or_default()
        ),
        _ => match &value["result"] {
            Value::Null => println!("ok"),
            result => println!("{}", serde_json::to_string_pretty(result).unwrap_or_default()),
        },
    }
}
