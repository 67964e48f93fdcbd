//! The simulated lab: one acquirer host process (or a proxy process in front of one), one
//! `posterm` process whose power the lab switches (SIGKILL is the power cut), its PTY console, its
//! NVM folder and its card slot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::host::HostProcess;
use crate::paths;
use posrig_core::capability::{Console, ConsoleLine};
use posrig_core::console_log::ConsoleLog;
use posrig_core::oracle::{self, Verdict};
use posrig_core::profile::{Event, Profile};
use posrig_core::serial::SerialConsole;

/// How long the terminal may take to boot and sign on.
const BOOT_TIMEOUT: Duration = Duration::from_secs(15);

/// How to build the lab.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// `posterm` defects to seed (`--defect NAME`).
    pub defects: Vec<String>,
    /// `posterm` setting overrides (`--set section.key=value`).
    pub terminal_settings: Vec<String>,
    /// Extra arguments of the `acqhost` simulator (behind the proxy when `proxy` is set).
    pub host_args: Vec<String>,
    /// Put an `acqhost --upstream` proxy between the terminal and the simulator: the terminal
    /// talks to the proxy, [`Lab::host`] is the proxy (its knobs, journal and observed ledger),
    /// and [`Lab::upstream`] the simulator behind it.
    pub proxy: bool,
}

/// A running simulated lab. Dropping it powers everything off and removes its files.
pub struct Lab {
    dir: PathBuf,
    options: LabOptions,
    /// The acquirer host the terminal talks to: the simulator, or the proxy in front of it.
    pub host: HostProcess,
    /// With [`LabOptions::proxy`], the simulator behind the proxy.
    pub upstream: Option<HostProcess>,
    /// Every line of the terminal's console.
    pub console: ConsoleLog,
    port: SerialConsole,
    /// The terminal profile used to type commands and parse the log.
    pub profile: Arc<Profile>,
    terminal: Option<Child>,
}

impl Lab {
    /// Starts the host, creates the console PTY, powers the terminal on and waits until it is ready.
    pub fn start(options: LabOptions) -> Result<Lab, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "posrig-lab-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let profile = Arc::new(Profile::load(&paths::fixture("terminals/posterm.toml"))?);
        let simulator = HostProcess::start(&options.host_args)?;
        let (host, upstream) = if options.proxy {
            let proxy = HostProcess::start(&["--upstream".to_string(), simulator.addr.to_string()])?;
            (proxy, Some(simulator))
        } else {
            (simulator, None)
        };
        let console = ConsoleLog::new();
        let sink_log = console.clone();
        let port = SerialConsole::pty(
            profile.clone(),
            Arc::new(move |line: &ConsoleLine| sink_log.push(line)),
        )
        .map_err(|e| e.to_string())?;
        let mut lab = Lab {
            dir,
            options,
            host,
            upstream,
            console,
            port,
            profile,
            terminal: None,
        };
        lab.power_on()?;
        Ok(lab)
    }

    /// The folder holding the NVM and the card slot.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn card_slot(&self) -> PathBuf {
        self.dir.join("card-slot")
    }

    /// Starts the terminal and waits for its `ready` event.
    pub fn power_on(&mut self) -> Result<(), String> {
        if self.powered() {
            return Ok(());
        }
        let program = paths::program("posterm")?;
        let mark = self.console.mark();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("posterm.stderr"))
            .map_err(|e| format!("cannot create the terminal's stderr file: {e}"))?;
        let mut command = Command::new(&program);
        command
            .arg("--console")
            .arg(self.port.device())
            .arg("--nvm")
            .arg(self.dir.join("nvm"))
            .arg("--card-slot")
            .arg(self.card_slot())
            .arg("--host")
            .arg(self.host.addr.to_string())
            .arg("--spec")
            .arg(paths::fixture("iso8583/cup.toml"));
        for setting in &self.options.terminal_settings {
            command.arg("--set").arg(setting);
        }
        for defect in &self.options.defects {
            command.arg("--defect").arg(defect);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        self.terminal = Some(child);
        self.wait_event(mark, BOOT_TIMEOUT, &["ready"])
            .map(drop)
            .map_err(|e| {
                let stderr = std::fs::read_to_string(self.dir.join("posterm.stderr")).unwrap_or_default();
                format!("the terminal did not become ready: {e}; its stderr: {stderr}")
            })
    }

    /// Cuts the terminal's power: SIGKILL, no warning, nothing unflushed survives.
    pub fn power_off(&mut self) {
        if let Some(mut child) = self.terminal.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the terminal process runs.
    pub fn powered(&mut self) -> bool {
        match self.terminal.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Puts the card `fixtures/cards/<name>.toml` into the slot.
    pub fn insert_card(&self, name: &str) -> Result<(), String> {
        let profile = paths::fixture(&format!("cards/{name}.toml"));
        if !profile.is_file() {
            return Err(format!("no card profile {}", profile.display()));
        }
        let staging = self.dir.join("card-slot.new");
        std::fs::write(&staging, profile.display().to_string()).map_err(|e| format!("card slot: {e}"))?;
        std::fs::rename(&staging, self.card_slot()).map_err(|e| format!("card slot: {e}"))
    }

    /// Takes the card out of the slot.
    pub fn remove_card(&self) -> Result<(), String> {
        match std::fs::remove_file(self.card_slot()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("card slot: {e}")),
            _ => Ok(()),
        }
    }

    /// Types a profile command (e.g. `sale` with `amount`) and returns the console mark before it.
    pub fn type_command(&self, name: &str, values: &[(&str, String)]) -> Result<usize, String> {
        let line = self.profile.command(name, values)?;
        let mark = self.console.mark();
        self.port.write(line.as_bytes()).map_err(|e| e.to_string())?;
        Ok(mark)
    }

    /// Waits from `since` for the first event named in `names`.
    pub fn wait_event(&self, since: usize, timeout: Duration, names: &[&str]) -> Result<Event, String> {
        self.console.wait_event(since, timeout, names)
    }

    /// The serial device the terminal's console is on.
    pub fn console_device(&self) -> String {
        self.port.device()
    }

    /// Canonical events from console line `since` on.
    pub fn events_since(&self, since: usize) -> Vec<Event> {
        self.console.events_since(since)
    }

    /// Asks the terminal for its status and waits for the answer: once it comes, whatever the
    /// terminal does at boot or after a command is done.
    pub fn status(&self) -> Result<Event, String> {
        let mark = self.type_command("status", &[])?;
        self.wait_event(mark, Duration::from_secs(5), &["status"])
    }

    /// Asks the terminal for its status (so its final state is on the console), then judges the
    /// run with the oracle: the host's journal and ledger against the terminal's events.
    pub fn verdict(&self) -> Result<Verdict, String> {
        self.status()?;
        let (journal, ledger) = (self.host.journal()?, self.host.ledger()?);
        Ok(oracle::judge(&journal, &ledger, &self.console.lines()))
    }

    /// The console transcript and the host journals, for a person reading a failure.
    pub fn transcript(&self) -> String {
        let mut out = String::from("--- console ---\n");
        for ConsoleLine { t_ns, text, .. } in self.console.lines() {
            out.push_str(&format!("{:>14.3} ms  {text}\n", t_ns as f64 / 1e6));
        }
        let hosts = [
            Some(("host", &self.host)),
            self.upstream.as_ref().map(|u| ("upstream", u)),
        ];
        for (name, host) in hosts.into_iter().flatten() {
            out.push_str(&format!("--- {name} journal ---\n"));
            for entry in host.journal().unwrap_or_default() {
                out.push_str(&format!(
                    "{:>14.3} ms  conn {} {:?} {} stan={} rc={} {}\n",
                    entry.t_ns as f64 / 1e6,
                    entry.connection,
                    entry.direction,
                    entry.mti.as_deref().unwrap_or("----"),
                    entry.stan.as_deref().unwrap_or("-"),
                    entry.fields.get(&39).map_or("-", String::as_str),
                    entry.note
                ));
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.transcript());
        }
        self.power_off();
        if std::env::var_os("POSRIG_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
