//! A rig assembled from its configuration: the acquirer host, the console reader, the
//! capabilities with their backends, the timeline and the trigger engine — brought to the safe
//! state before anything else, and left in it on the way out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use posrig_host::{Host, HostConfig as SimulatorConfig, JournalEntry, Settings};
use posrig_iso8583::{Codec, MacKey, Spec};

use crate::actuators::{Action, Actuators, Capabilities, Done};
use crate::capability::{Console, ConsoleLine, LineSink, NetworkImpairment};
use crate::config::{LinkBackend, RigConfig};
use crate::console_log::ConsoleLog;
use crate::error::{Result, RigError};
use crate::oracle::{self, Verdict};
use crate::profile::{Event, Profile};
use crate::serial::SerialConsole;
use crate::sim::card::SimCardFeeder;
use crate::sim::netns::{NetnsAddresses, NetnsLink};
use crate::sim::power::{locate_program, SimPower, TerminalCommand};
use crate::sim::proxy::ProxyLink;
use crate::timeline::{Entry, Source, Timeline};
use crate::trigger::TriggerEngine;

/// Extra choices when starting a rig, beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct RigOptions {
    /// Arguments appended to the simulated terminal's command line (e.g. `--defect NAME`).
    pub terminal_args: Vec<String>,
    /// Force a link backend instead of the configuration's.
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
}

/// A running rig. Dropping it restores the safe state and stops everything it started.
pub struct Rig {
    // Field order is drop order: triggers stop before the actuators they drive, the terminal
    // before its console and link.
    triggers: Arc<TriggerEngine>,
    actuators: Arc<Actuators>,
    console: SerialConsole,
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
    /// terminal on) and returns it. Fails, with nothing left actuated, when the safe state cannot
    /// be reached.
    pub fn start(config: &RigConfig, options: RigOptions) -> Result<Rig> {
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
        let link_kind = choose_link(options.link.unwrap_or(config.link))?;

        let netns = match link_kind {
            LinkKind::Netns => {
                let tag = options
                    .link_tag
                    .clone()
                    .unwrap_or_else(|| fresh_link_tag(&config.name));
                Some(Arc::new(NetnsLink::create_with_addresses(
                    &tag,
                    link_addresses(&tag),
                )?))
            }
            LinkKind::Proxy => None,
        };
        let host_ip = netns
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |n| IpAddr::V4(n.rig_address()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("posrig host")
            .enable_all()
            .build()
            .map_err(|e| RigError::io("starting the host runtime", e))?;
        let mac_key = MacKey::from_hex(&config.host.mac_key).map_err(|e| RigError::Other(e.to_string()))?;
        let host = runtime
            .block_on(Host::start(SimulatorConfig {
                listen: SocketAddr::new(host_ip, config.host.port),
                codec: codec.clone(),
                mac_key,
                settings: Settings::default(),
            }))
            .map_err(|e| RigError::io("starting the acquirer host", e))?;
        let host = Arc::new(host);
        let proxy = match link_kind {
            LinkKind::Proxy => {
                let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
                let prefix = codec.spec().frame.length_prefix_bytes;
                Some(Arc::new(ProxyLink::start(listen, host.addr(), prefix)?))
            }
            LinkKind::Netns => None,
        };
        let terminal_reaches_host = proxy.as_ref().map_or(host.addr(), |p| p.addr());

        let engine_cell: Arc<OnceLock<Arc<TriggerEngine>>> = Arc::new(OnceLock::new());
        let lines = RigLines {
            engine: engine_cell.clone(),
            timeline: timeline.clone(),
            log: console_log.clone(),
        };
        let console = SerialConsole::pty(profile.clone(), Arc::new(lines))?;
        host.observe(host_observer(&engine_cell, &timeline));

        let terminal = config
            .terminal
            .as_ref()
            .ok_or_else(|| RigError::Missing("terminal program".into()))?;
        let card_slot = workdir.join("card-slot");
        let fill = |arg: &str| {
            arg.replace("{console}", &console.device())
                .replace("{nvm}", &workdir.join("nvm").display().to_string())
                .replace("{card_slot}", &card_slot.display().to_string())
                .replace("{host}", &terminal_reaches_host.to_string())
                .replace("{spec}", &config.host.spec.display().to_string())
        };
        let mut args: Vec<String> = terminal.args.iter().map(|a| fill(a)).collect();
        args.extend(options.terminal_args.iter().cloned());
        let power = SimPower::new(TerminalCommand {
            program: locate_program(&terminal.program),
            args,
            namespace: netns.as_ref().map(|n| n.namespace_path()),
            stderr: workdir.join("terminal.stderr"),
        });
        let impairment: Option<Arc<dyn NetworkImpairment>> =
            proxy.clone().map(|p| p as Arc<dyn NetworkImpairment>);
        let link: Arc<dyn crate::capability::Link> = match (&netns, &proxy) {
            (Some(netns), _) => netns.clone(),
            (None, Some(proxy)) => proxy.clone(),
            (None, None) => return Err(RigError::Other("no link backend could be set up".into())),
        };
        let capabilities = Capabilities {
            power: Some(Arc::new(power)),
            card: Some(Arc::new(SimCardFeeder::new(&card_slot, &config.cards))),
            link: Some(link),
            impairment,
        };
        let actuators = Arc::new(Actuators::new(capabilities, timeline.clone()));
        let triggers = Arc::new(TriggerEngine::new(actuators.clone(), timeline.clone()));
        let _ = engine_cell.set(triggers.clone());
        register_for_panics(&actuators);

        let rig = Rig {
            triggers,
            actuators,
            console,
            host,
            runtime,
            timeline,
            console_log,
            profile,
            codec,
            link_kind,
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

/// The rig's console handler: triggers first (the timing-critical path), then the timeline and
/// the log.
struct RigLines {
    engine: Arc<OnceLock<Arc<TriggerEngine>>>,
    timeline: Timeline,
    log: ConsoleLog,
}

impl LineSink for RigLines {
    fn raw(&self, text: &str, t_ns: u64) {
        if let Some(engine) = self.engine.get() {
            engine.on_console_text(text, t_ns);
        }
    }

    fn line(&self, line: &ConsoleLine) {
        if let Some(engine) = self.engine.get() {
            engine.on_console_line(line);
        }
        self.timeline
            .push(Entry::new(line.t_ns, Source::Console, "line", line.text.clone()));
        if let Some(event) = &line.event {
            let mut entry = Entry::new(line.t_ns, Source::Terminal, event.name.clone(), line.text.clone());
            entry.fields = event.fields.clone().into_iter().collect();
            self.timeline.push(entry);
        }
        self.log.push(line);
    }
}

/// The host's journal observer: triggers first, then the timeline.
fn host_observer(engine: &Arc<OnceLock<Arc<TriggerEngine>>>, timeline: &Timeline) -> posrig_host::Observer {
    let (engine, timeline) = (engine.clone(), timeline.clone());
    Arc::new(move |entry: &JournalEntry| {
        if let Some(engine) = engine.get() {
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

fn choose_link(backend: LinkBackend) -> Result<LinkKind> {
    // SAFETY: geteuid has no preconditions.
    let privileged = unsafe { libc::geteuid() } == 0;
    match backend {
        LinkBackend::Netns if !privileged => Err(RigError::Other(
            "link backend \"netns\" needs root (network namespaces); run as root or use \"proxy\"".into(),
        )),
        LinkBackend::Netns => Ok(LinkKind::Netns),
        LinkBackend::Proxy => Ok(LinkKind::Proxy),
        LinkBackend::Auto if privileged => Ok(LinkKind::Netns),
        LinkBackend::Auto => Ok(LinkKind::Proxy),
    }
}

/// A short tag unique to this rig in this process, for namespace and interface names.
fn fresh_link_tag(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let short: String = name.chars().filter(char::is_ascii_alphanumeric).take(3).collect();
    format!("{short}{}{n}", std::process::id() % 10_000)
}

/// A /30 of the link-local range chosen from the tag, so rigs running side by side do not share
/// a subnet (the same rig-side address on two interfaces breaks routing).
fn link_addresses(tag: &str) -> NetnsAddresses {
    let hash = tag
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    // Blocks of 4 addresses in 169.254.1.0 to 169.254.254.255, skipping the reserved first and
    // last /24s.
    let block = 64 + hash % (253 * 64);
    let base = u32::from(Ipv4Addr::new(169, 254, 0, 0)) + block * 4;
    NetnsAddresses {
        rig: Ipv4Addr::from(base + 1),
        terminal: Ipv4Addr::from(base + 2),
        prefix_len: 30,
    }
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
