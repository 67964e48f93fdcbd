//! A rig assembled from its configuration: the acquirer host, the console reader, the
//! capabilities with their backends, the timeline and the trigger engine — brought to the safe
//! state before anything else, and left in it on the way out.

mod hardware;
mod simulated;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use posrig_host::{Host, HostConfig as HostStart, JournalEntry, Mode, Settings};
use posrig_iso8583::{Codec, MacKey, Spec};

use crate::actuators::{Action, Actuators, Capabilities, Done};
use crate::capability::{Console, ConsoleLine, LineSink};
use crate::config::{HostMode, LinkBackend, RigConfig};
use crate::console_log::ConsoleLog;
use crate::error::{Result, RigError};
use crate::gpio::InputWatcher;
use crate::oracle::{self, Verdict};
use crate::profile::{Event, Profile};
use crate::serial::SerialConsole;
use crate::timeline::{Entry, Source, Timeline};
use crate::trigger::TriggerEngine;

/// Extra choices when starting a rig, beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct RigOptions {
    /// Arguments appended to the simulated terminal's command line (e.g. `--defect NAME`).
    pub terminal_args: Vec<String>,
    /// Force a link backend instead of the configuration's (simulated rigs).
    pub link: Option<LinkBackend>,
    /// Name the network namespace and veth after this tag instead of a fresh one; a rig started
    /// again with the same tag first removes what a killed predecessor left behind.
    pub link_tag: Option<String>,
    /// Folder for the terminal's NVM, card slot and stderr; a fresh temporary one when absent.
    pub workdir: Option<PathBuf>,
}

/// Which link backend a running rig uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// veth pair into the terminal's network namespace.
    Netns,
    /// userspace TCP proxy.
    Proxy,
    /// a real interface switched by netlink.
    Netlink,
}

/// A running rig. Dropping it restores the safe state and stops everything it started.
pub struct Rig {
    // Field order is drop order: triggers stop before the actuators they drive, the terminal
    // before its console and link.
    triggers: Arc<TriggerEngine>,
    /// Records GPIO input edges into the timeline for as long as the rig runs.
    _input_watcher: Option<InputWatcher>,
    actuators: Arc<Actuators>,
    console: Arc<SerialConsole>,
    host: Arc<Host>,
    runtime: tokio::runtime::Runtime,
    timeline: Timeline,
    console_log: ConsoleLog,
    profile: Arc<Profile>,
    codec: Codec,
    link_kind: LinkKind,
    workdir: PathBuf,
    remove_workdir: bool,
}

impl Rig {
    /// Starts the rig described by `config`, brings it to the safe state (which powers the
    /// terminal on) and returns it. Fails, with nothing left actuated, when a device is missing or
    /// the safe state cannot be reached: a rig that is not safe runs no test.
    pub fn start(config: &RigConfig, options: RigOptions) -> Result<Rig> {
        if !config.simulated() {
            refuse_simulator_options(config, &options)?;
        }
        config.check_devices()?;
        let (workdir, remove_workdir) = match &options.workdir {
            Some(dir) => (dir.clone(), false),
            None => (fresh_workdir(&config.name), true),
        };
        std::fs::create_dir_all(&workdir)
            .map_err(|e| RigError::io(format!("creating {}", workdir.display()), e))?;
        let timeline = Timeline::new();
        let console_log = ConsoleLog::new();
        let profile = Arc::new(Profile::load(&config.terminal_profile).map_err(RigError::Other)?);
        let spec = Spec::load(&config.host.spec).map_err(|e| RigError::Other(e.to_string()))?;
        let codec = Codec::new(spec);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("posrig host")
            .enable_all()
            .build()
            .map_err(|e| RigError::io("starting the host runtime", e))?;
        // The console's and the host's handlers reach the triggers through a weak reference: the
        // engine drives the actuators, which hold the console, whose reader holds its handler.
        let engine_cell: EngineCell = Arc::new(OnceLock::new());
        let lines = RigLines {
            engine: engine_cell.clone(),
            timeline: timeline.clone(),
            log: console_log.clone(),
        };
        let assembly = Assembly {
            config,
            options: &options,
            workdir: &workdir,
            runtime: &runtime,
            codec: &codec,
            profile: profile.clone(),
            sink: Arc::new(lines),
            timeline: timeline.clone(),
            observer: host_observer(&engine_cell, &timeline),
        };
        let parts = if config.simulated() {
            simulated::assemble(assembly)?
        } else {
            hardware::assemble(assembly)?
        };
        let actuators = Arc::new(Actuators::new(parts.capabilities, timeline.clone()));
        let triggers = Arc::new(TriggerEngine::new(actuators.clone(), timeline.clone()));
        let _ = engine_cell.set(Arc::downgrade(&triggers));
        register_for_panics(&actuators);

        let rig = Rig {
            triggers,
            _input_watcher: parts.inputs,
            actuators,
            console: parts.console,
            host: parts.host,
            runtime,
            timeline,
            console_log,
            profile,
            codec,
            link_kind: parts.link_kind,
            workdir,
            remove_workdir,
        };
        rig.safe_state("rig start")?;
        Ok(rig)
    }

    /// Brings the terminal to the safe state: link up, impairments off, card out, power on.
    pub fn safe_state(&self, cause: &str) -> Result<()> {
        let failures = self.actuators.safe_state(cause);
        if failures.is_empty() {
            return Ok(());
        }
        let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
        Err(RigError::Other(format!(
            "the rig cannot reach its safe state (power on, card out, link up): {}",
            reasons.join("; ")
        )))
    }

    /// Performs an action now, on behalf of the test.
    pub fn perform(&self, action: &Action) -> Result<Done> {
        self.actuators.perform(action, "test")
    }

    /// Performs an action, holds it for `hold`, and undoes it (power cycle, link flap).
    pub fn perform_for(&self, action: &Action, hold: Duration) -> Result<Done> {
        self.actuators.perform_for(action, hold, "test")
    }

    /// Types a command of the terminal profile (e.g. `sale` with `amount`) and returns the
    /// console mark before it.
    pub fn type_command(&self, name: &str, values: &[(&str, String)]) -> Result<usize> {
        let line = self.profile.command(name, values).map_err(RigError::Other)?;
        let mark = self.console_log.mark();
        self.type_raw(&line)?;
        Ok(mark)
    }

    /// Types `text` and the profile's line ending on the console.
    pub fn console_write_line(&self, text: &str) -> Result<()> {
        self.type_raw(&format!("{text}{}", self.profile.console.line_ending))
    }

    fn type_raw(&self, line: &str) -> Result<()> {
        let entry = Entry::new(
            crate::timeline::now_ns(),
            Source::Marker,
            "typed",
            line.trim_end(),
        );
        self.timeline.push(entry);
        self.console.write(line.as_bytes())
    }

    /// Waits from console mark `since` for the first event named in `names`.
    pub fn wait_event(&self, since: usize, timeout: Duration, names: &[&str]) -> Result<Event> {
        self.console_log
            .wait_event(since, timeout, names)
            .map_err(RigError::Other)
    }

    /// Powers the terminal on (if it is not) and waits for its `ready` event.
    pub fn power_on_and_wait(&self, timeout: Duration) -> Result<Event> {
        let mark = self.console_log.mark();
        self.perform(&Action::PowerOn)?;
        self.wait_event(mark, timeout, &["ready"])
    }

    /// Asks the terminal for its status and waits for the answer: once it comes, whatever the
    /// terminal was doing (booting, finishing a command) is done.
    pub fn status(&self) -> Result<Event> {
        let mark = self.type_command("status", &[])?;
        self.wait_event(mark, Duration::from_secs(10), &["status"])
    }

    /// Puts the terminal's final state on the console, then judges the run: the host's journal
    /// and ledger against the terminal's events (domain.md §5).
    pub fn verdict(&self) -> Result<Verdict> {
        self.status()?;
        let (journal, ledger) = (self.host.journal(0), self.host.ledger());
        Ok(oracle::judge(&journal, &ledger, &self.console_log.lines()))
    }

    /// The acquirer host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The message codec.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The run's timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Every console line.
    pub fn console_log(&self) -> &ConsoleLog {
        &self.console_log
    }

    /// The trigger engine.
    pub fn triggers(&self) -> &TriggerEngine {
        &self.triggers
    }

    /// The actuators.
    pub fn actuators(&self) -> &Arc<Actuators> {
        &self.actuators
    }

    /// The terminal profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Which link backend runs.
    pub fn link_kind(&self) -> LinkKind {
        self.link_kind
    }

    /// The folder holding the terminal's NVM, card slot and stderr.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The async runtime the host runs on, for callers that need one.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

impl Rig {
    /// The timeline as text, for a person reading a failure.
    pub fn transcript(&self) -> String {
        let entries = self.timeline.entries();
        let start = entries.first().map_or(0, |e| e.t_ns);
        entries
            .iter()
            .map(|e| {
                format!(
                    "{:>10.3} ms {:<8?} {} | {}\n",
                    (e.t_ns - start) as f64 / 1e6,
                    e.source,
                    e.name,
                    e.detail
                )
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- rig timeline ---\n{}", self.transcript());
        }
        if let Err(e) = self.safe_state("rig exit") {
            eprintln!("posrig: {e}");
        }
        if self.remove_workdir && std::env::var_os("POSRIG_KEEP_WORKDIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

/// What the simulated and hardware assemblies are given.
struct Assembly<'a> {
    config: &'a RigConfig,
    options: &'a RigOptions,
    workdir: &'a Path,
    runtime: &'a tokio::runtime::Runtime,
    codec: &'a Codec,
    profile: Arc<Profile>,
    sink: Arc<dyn LineSink>,
    timeline: Timeline,
    observer: posrig_host::Observer,
}

/// What they hand back.
struct Parts {
    capabilities: Capabilities,
    console: Arc<SerialConsole>,
    host: Arc<Host>,
    link_kind: LinkKind,
    inputs: Option<InputWatcher>,
}

impl Assembly<'_> {
    /// Starts the acquirer host (simulator or proxy, as configured) on `listen`, its journal
    /// observed by the triggers and the timeline from the first message on.
    fn start_host(&self, listen: SocketAddr) -> Result<Arc<Host>> {
        let host = &self.config.host;
        let mode = match &host.mode {
            HostMode::Simulator => Mode::Simulator,
            HostMode::Proxy { upstream } => Mode::Proxy {
                upstream: resolve(upstream)?,
            },
        };
        let mac_key = MacKey::from_hex(&host.mac_key).map_err(|e| RigError::Other(e.to_string()))?;
        let started = self
            .runtime
            .block_on(Host::start_with_mode(
                HostStart {
                    listen,
                    codec: self.codec.clone(),
                    mac_key,
                    settings: Settings::default(),
                },
                mode,
            ))
            .map_err(|e| RigError::io(format!("starting the acquirer host on {listen}"), e))?;
        started.observe(self.observer.clone());
        Ok(Arc::new(started))
    }
}

/// A hardware rig's terminal and link are real: options that only the simulated rig can honour
/// are refused rather than ignored, so a test never runs believing a setting is in force.
fn refuse_simulator_options(config: &RigConfig, options: &RigOptions) -> Result<()> {
    let rig = format!(
        "the rig {} ({}) is real hardware",
        config.name,
        config.path.display()
    );
    if !options.terminal_args.is_empty() {
        return Err(RigError::Other(format!(
            "{rig}: its terminal cannot take the simulated terminal's arguments {:?} (a defect or a \
             setting such as --set policy.…); run this test on a simulated rig",
            options.terminal_args.join(" ")
        )));
    }
    if let Some(link) = options.link.filter(|link| *link != LinkBackend::Auto) {
        return Err(RigError::Other(format!(
            "{rig}: its link is the one its [link] table configures; the link override {:?} \
             chooses between the simulated rig's links (leave out --link)",
            format!("{link:?}").to_lowercase()
        )));
    }
    Ok(())
}

/// Makes `proxy`, in front of `host`, refuse new connections exactly while the host is in
/// maintenance.
fn mirror_maintenance(host: &Host, proxy: &Arc<crate::sim::proxy::ProxyLink>) {
    let proxy = Arc::downgrade(proxy);
    host.on_maintenance(Arc::new(move |on| {
        if let Some(proxy) = proxy.upgrade() {
            if let Err(e) = proxy.refuse_new_connections(on) {
                eprintln!("posrig: the proxy in front of the host cannot follow its maintenance: {e}");
            }
        }
    }));
}

/// The address of `host:port`, resolved once.
fn resolve(upstream: &str) -> Result<SocketAddr> {
    upstream
        .to_socket_addrs()
        .map_err(|e| RigError::io(format!("resolving the upstream acquirer host {upstream}"), e))?
        .next()
        .ok_or_else(|| RigError::Other(format!("the upstream acquirer host {upstream} has no address")))
}

/// Where the console's and the host's handlers find the trigger engine once it exists.
type EngineCell = Arc<OnceLock<Weak<TriggerEngine>>>;

/// The rig's console handler: triggers first (the timing-critical path), then the timeline and
/// the log.
struct RigLines {
    engine: EngineCell,
    timeline: Timeline,
    log: ConsoleLog,
}

impl LineSink for RigLines {
    fn raw(&self, text: &str, t_ns: u64) {
        if let Some(engine) = self.engine.get().and_then(Weak::upgrade) {
            engine.on_console_text(text, t_ns);
        }
    }

    fn line(&self, line: &ConsoleLine) {
        if let Some(engine) = self.engine.get().and_then(Weak::upgrade) {
            engine.on_console_line(line);
        }
        self.timeline
            .push(Entry::new(line.t_ns, Source::Console, "line", line.text.clone()));
        if let Some(event) = &line.event {
            let mut entry = Entry::new(line.t_ns, Source::Terminal, event.name.clone(), line.text.clone());
            entry.fields = event
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.timeline.push(entry);
        }
        self.log.push(line);
    }

    fn gap(&self, t_ns: u64, device: &str, reason: &str) {
        let entry = Entry::new(t_ns, Source::Console, "gap", format!("{device}: {reason}"));
        self.timeline.push(entry);
    }

    fn resumed(&self, t_ns: u64, device: &str) {
        self.timeline
            .push(Entry::new(t_ns, Source::Console, "resumed", device.to_string()));
    }

    fn unfinished(&self, t_ns: u64, text: &str) {
        let entry = Entry::new(t_ns, Source::Console, "unfinished line", text.to_string());
        self.timeline.push(entry);
    }
}

/// The host's journal observer: triggers first, then the timeline.
fn host_observer(engine: &EngineCell, timeline: &Timeline) -> posrig_host::Observer {
    let (engine, timeline) = (engine.clone(), timeline.clone());
    Arc::new(move |entry: &JournalEntry| {
        if let Some(engine) = engine.get().and_then(Weak::upgrade) {
            engine.on_host(entry);
        }
        let direction = format!("{:?}", entry.direction).to_lowercase();
        let name = match &entry.mti {
            Some(mti) => format!("{mti} {direction}"),
            None => "connection".to_string(),
        };
        let mut record = Entry::new(entry.t_ns, Source::Host, name, entry.note.clone());
        if let Some(stan) = &entry.stan {
            record = record.with("stan", stan.clone());
        }
        if let Some(rc) = entry.fields.get(&39) {
            record = record.with("rc", rc.clone());
        }
        timeline.push(record);
    })
}

fn fresh_workdir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("posrig-{name}-{}-{n}", std::process::id()))
}

thread_local! {
    /// Rigs started on this thread, to bring to the safe state if this thread panics.
    static PANIC_SAFETY: std::cell::RefCell<Vec<Weak<Actuators>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Installs (once) a panic hook that brings the rigs started on the panicking thread to the safe
/// state before the default hook runs — even where the process aborts instead of unwinding — and
/// registers `actuators` for the calling thread. Rigs of other threads are left alone.
fn register_for_panics(actuators: &Arc<Actuators>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let rigs = PANIC_SAFETY.with(|rigs| rigs.try_borrow().map(|r| r.clone()).unwrap_or_default());
            for actuators in rigs.iter().filter_map(Weak::upgrade) {
                actuators.safe_state("panic");
            }
            previous(info);
        }));
    });
    PANIC_SAFETY.with(|rigs| {
        let mut rigs = rigs.borrow_mut();
        rigs.retain(|w| w.strong_count() > 0);
        rigs.push(Arc::downgrade(actuators));
    });
}
