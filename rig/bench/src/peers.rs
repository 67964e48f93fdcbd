//! The Python peers (`peers/*.py`): what users would otherwise reach for. Each runs in a venv of
//! its own under the target folder, made on first use, and talks to the bench in JSON lines on
//! its standard output: `ready` when the terminal is powered and the expect is about to start,
//! `fired` with the done time after each power cut, `ingested` at the end of a stream.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ingest::Reading;
use crate::latency::{Contender, Stamps, FIRING_TIMEOUT};

/// How long a peer may take to start (Python imports) and to power its terminal on again.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A Python peer: its script and what its venv holds.
#[derive(Debug, Clone, Copy)]
pub struct PeerKind {
    /// Its name in the table.
    pub name: &'static str,
    /// Its script in `peers/`.
    script: &'static str,
    /// Its requirements file in `peers/`.
    requirements: &'static str,
    /// Modules it imports, to check the venv.
    imports: &'static str,
}

/// pexpect's `fdspawn` on a port pyserial opened.
pub const PEXPECT: PeerKind = PeerKind {
    name: "pexpect",
    script: "pexpect_peer.py",
    requirements: "requirements.txt",
    imports: "pexpect.fdpexpect, serial",
};

/// labgrid's `SerialDriver.expect` on a `RawSerialPort`. Its own venv: labgrid depends on its
/// fork of pyserial, which installs the same `serial` module as pyserial.
pub const LABGRID: PeerKind = PeerKind {
    name: "labgrid",
    script: "labgrid_peer.py",
    requirements: "requirements-labgrid.txt",
    imports: "labgrid.driver, labgrid.resource",
};

/// The folder of the peer scripts and requirements.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// A peer ready to start: the venv's Python and its script.
pub struct Prepared {
    kind: PeerKind,
    python: PathBuf,
    venv: PathBuf,
}

impl PeerKind {
    /// Makes (once) and checks the venv `venvs/<name>` with `python3`; the error says why the
    /// peer cannot run.
    pub fn prepare(self, python3: &str, venvs: &Path) -> Result<Prepared, String> {
        let venv = venvs.join(self.name);
        let python = venv.join("bin/python");
        if !python.is_file() {
            eprintln!(
                "posrig-bench: making the {} peer's venv {} (once)",
                self.name,
                venv.display()
            );
            run(
                Command::new(python3).args(["-m", "venv"]).arg(&venv),
                &format!("{python3} -m venv"),
            )?;
        }
        let requirements_path = peers_dir().join(self.requirements);
        let requirements = std::fs::read_to_string(&requirements_path)
            .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
        let stamp = venv.join("posrig-bench-requirements.txt");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) {
            eprintln!(
                "posrig-bench: pip install -r {} (once)",
                requirements_path.display()
            );
            run(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r"])
                    .arg(&requirements_path),
                &format!("pip install -r {}", self.requirements),
            )?;
            std::fs::write(&stamp, &requirements)
                .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
        }
        run(
            Command::new(&python).args(["-c", &format!("import {}", self.imports)]),
            &format!("import {}", self.imports),
        )?;
        Ok(Prepared {
            kind: self,
            python,
            venv,
        })
    }
}

/// Runs `command` to completion; the error names `what` and quotes the last line it printed.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Err(format!("{what} failed ({}): {}", output.status, last.trim()))
}

/// A running peer.
pub struct Peer {
    name: &'static str,
    process: Child,
    messages: Receiver<Value>,
    stderr: PathBuf,
}

impl Prepared {
    /// The peer's name.
    pub fn name(&self) -> &'static str {
        self.kind.name
    }

    /// Starts the peer's script with `args`; its standard error goes to a log in its venv.
    pub fn start(&self, args: &[String]) -> Result<Peer, String> {
        let stderr = self.venv.join(format!("{}.stderr", self.kind.name));
        let log = File::create(&stderr).map_err(|e| format!("cannot create {}: {e}", stderr.display()))?;
        let mut process = Command::new(&self.python)
            .arg(peers_dir().join(self.kind.script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the {} peer: {e}", self.kind.name))?;
        let stdout = process.stdout.take().expect("piped stdout");
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    if sender.send(message).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Peer {
            name: self.kind.name,
            process,
            messages,
            stderr,
        })
    }
}

impl Peer {
    /// The next message, which must be `event`.
    pub fn expect(&mut self, event: &str, timeout: Duration) -> Result<Value, String> {
        let message = self.messages.recv_timeout(timeout).map_err(|e| {
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => format!("said nothing for {timeout:?}"),
                mpsc::RecvTimeoutError::Disconnected => "exited".to_string(),
            };
            format!(
                "the {} peer {why} while the bench waited for {event:?}{}",
                self.name,
                self.last_error()
            )
        })?;
        if message["event"] == event {
            return Ok(message);
        }
        Err(format!(
            "the {} peer said {message} while the bench waited for {event:?}",
            self.name
        ))
    }

    /// A field of `message` as a number.
    fn number(&self, message: &Value, field: &str) -> Result<u64, String> {
        message[field]
            .as_u64()
            .ok_or_else(|| format!("the {} peer sent {message} without a number {field:?}", self.name))
    }

    /// The last line of the peer's standard error, if any, to quote in an error.
    fn last_error(&self) -> String {
        std::fs::read_to_string(&self.stderr)
            .ok()
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .map_or(String::new(), |line| format!(": {}", line.trim()))
    }

    /// Waits for the peer's `ingested` report.
    pub fn ingested(&mut self, timeout: Duration) -> Result<Reading, String> {
        let message = self.expect("ingested", timeout)?;
        Ok(Reading {
            lines: None,
            events: Some(self.number(&message, "events")?),
            end_ns: self.number(&message, "end_ns")?,
            cpu_ns: self.number(&message, "cpu_ns")?,
        })
    }

    /// Waits for the peer to be ready (started, terminal powered).
    pub fn ready(&mut self) -> Result<(), String> {
        self.expect("ready", READY_TIMEOUT).map(drop)
    }
}

impl Contender for Peer {
    fn arm(&mut self) -> Result<(), String> {
        self.ready()
    }

    fn fired(&mut self, _index: usize) -> Result<Stamps, String> {
        let message = self.expect("fired", FIRING_TIMEOUT)?;
        Ok(Stamps {
            steps: None,
            done_ns: self.number(&message, "done_ns")?,
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.process.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
