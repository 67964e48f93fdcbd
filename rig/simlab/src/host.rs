//! The acquirer host as a process (`acqhost`), driven through its JSON control port.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use posrig_host::{JournalEntry, Ledger};
use serde_json::{json, Value};

use crate::paths;

/// A running `acqhost`.
pub struct HostProcess {
    child: Child,
    /// Where terminals connect.
    pub addr: SocketAddr,
    /// The control port.
    pub control: SocketAddr,
    client: Mutex<BufReader<TcpStream>>,
}

impl HostProcess {
    /// Starts `acqhost` on free loopback ports with `extra_args`, and connects to its control port.
    pub fn start(extra_args: &[String]) -> Result<HostProcess, String> {
        let program = paths::program("acqhost")?;
        let mut child = Command::new(&program)
            .arg("--spec")
            .arg(paths::fixture("iso8583/cup.toml"))
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("acqhost has no stdout")?;
        let mut ready = String::new();
        BufReader::new(stdout)
            .read_line(&mut ready)
            .map_err(|e| format!("acqhost did not report ready: {e}"))?;
        let address = |key: &str| -> Result<SocketAddr, String> {
            ready
                .split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("acqhost said {ready:?}, expected `ready host=ADDR control=ADDR`"))
        };
        let (addr, control) = match (address("host="), address("control=")) {
            (Ok(addr), Ok(control)) => (addr, control),
            (Err(e), _) | (_, Err(e)) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let stream =
            TcpStream::connect(control).map_err(|e| format!("cannot reach the control port: {e}"))?;
        Ok(HostProcess {
            child,
            addr,
            control,
            client: Mutex::new(BufReader::new(stream)),
        })
    }

    /// Sends one control request and returns its result.
    pub fn request(&self, request: Value) -> Result<Value, String> {
        let mut client = self.client.lock().expect("control lock");
        let mut line = request.to_string();
        line.push('\n');
        client
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| format!("control port: {e}"))?;
        let mut answer = String::new();
        client
            .read_line(&mut answer)
            .map_err(|e| format!("control port: {e}"))?;
        let answer: Value =
            serde_json::from_str(&answer).map_err(|e| format!("control answer {answer:?}: {e}"))?;
        if answer["ok"] == json!(true) {
            Ok(answer["result"].clone())
        } else {
            Err(format!("host refused {request}: {}", answer["error"]))
        }
    }

    /// Adds a fault rule given as JSON, e.g. `{"kind":"sale","action":"drop_reply"}`.
    pub fn add_rule(&self, rule: Value) -> Result<(), String> {
        self.request(json!({"op": "add_rule", "rule": rule})).map(drop)
    }

    /// Replaces the host settings.
    pub fn set_settings(&self, settings: Value) -> Result<(), String> {
        self.request(json!({"op": "settings", "settings": settings}))
            .map(drop)
    }

    /// The host's ledger.
    pub fn ledger(&self) -> Result<Ledger, String> {
        let value = self.request(json!({"op": "ledger"}))?;
        serde_json::from_value(value).map_err(|e| format!("ledger: {e}"))
    }

    /// The whole wire journal.
    pub fn journal(&self) -> Result<Vec<JournalEntry>, String> {
        let value = self.request(json!({"op": "journal", "since": 0}))?;
        serde_json::from_value(value).map_err(|e| format!("journal: {e}"))
    }

    /// A live feed of journal entries from position `since` on.
    pub fn watch(&self, since: u64) -> Result<JournalFeed, String> {
        let mut stream =
            TcpStream::connect(self.control).map_err(|e| format!("cannot reach the control port: {e}"))?;
        let line = format!("{}\n", json!({"op": "watch", "since": since}));
        stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("control port: {e}"))?;
        Ok(JournalFeed {
            reader: BufReader::new(stream),
        })
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Journal entries as the host records them.
pub struct JournalFeed {
    reader: BufReader<TcpStream>,
}

impl JournalFeed {
    /// The next entry, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<JournalEntry, String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("the host closed the journal feed".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("journal entry {line:?}: {e}")),
            Err(e) => Err(format!("no journal entry within {timeout:?}: {e}")),
        }
    }

    /// Waits for the first entry satisfying `wanted`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&JournalEntry) -> bool,
    ) -> Result<JournalEntry, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(format!("no such journal entry within {timeout:?}"));
            }
            let entry = self.next(left)?;
            if wanted(&entry) {
                return Ok(entry);
            }
        }
    }
}
