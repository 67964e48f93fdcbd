//! Rig configuration: one TOML file per rig naming a backend for each capability, the terminal
//! profile, the host and its spec. Every value is checked when the rig is built; errors name the
//! file, the line and the field. Two sets of backends stand behind the same tables: the simulator
//! (`fixtures/rigs/sim.toml`) and real hardware on a Raspberry Pi or any Linux board
//! (`fixtures/rigs/pi-example.toml`).

mod checks;
mod locate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Result, RigError};
use crate::gpio::{
    Board, CdevConfig, GpioRelayConfig, ServoFeederConfig, SolenoidFeederConfig, WatchedInputConfig,
};
use crate::linux::netlink_link::NetlinkLinkConfig;
use crate::linux::nftables::NftablesConfig;
use crate::serial::SerialSettings;

use locate::Layout;

/// A rig configuration, validated, with paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct RigConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The rig's name (used for sockets, namespaces, nftables tables and records).
    pub name: String,
    /// The terminal profile.
    pub terminal_profile: PathBuf,
    /// The folder of card profiles.
    pub cards: PathBuf,
    /// The Raspberry Pi model whose header the pins are checked against, if any.
    pub board: Option<Board>,
    /// Where GPIO lines come from, for the relay, solenoid, servo and input backends.
    pub gpio: Option<GpioConfig>,
    /// The acquirer host.
    pub host: HostConfig,
    /// How to start the simulated terminal, for the `sim` power backend.
    pub terminal: Option<TerminalConfig>,
    /// Power backend.
    pub power: PowerConfig,
    /// Card feeder backend.
    pub card_feeder: CardFeederConfig,
    /// Console backend.
    pub console: ConsoleConfig,
    /// Link backend.
    pub link: LinkConfig,
    /// Network impairment backend beyond what the link backend offers, if any.
    pub impairment: Option<ImpairmentConfig>,
    /// GPIO inputs whose edges go into the timeline.
    pub inputs: Vec<WatchedInputConfig>,
    /// Devices the configuration names, checked when the rig starts.
    devices: Vec<Device>,
}

/// Where the GPIO lines come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "driver", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GpioConfig {
    /// The Raspberry Pi's GPIO and PWM through rppal (Pi 3, 4, 5); pins are BCM numbers.
    Rppal {},
    /// Any Linux board through the GPIO character device; pins are the chip's line offsets.
    Cdev(CdevConfig),
}

/// Whether the host is the simulator or a proxy in front of a real acquirer test host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMode {
    /// posrig's acquirer host simulator.
    Simulator,
    /// A transparent ISO 8583 proxy to the test host at `upstream` (`host:port`).
    Proxy {
        /// The real test host.
        upstream: String,
    },
}

/// The acquirer host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Simulator or proxy.
    pub mode: HostMode,
    /// The message spec.
    pub spec: PathBuf,
    /// MAC working key, 16 hex digits.
    pub mac_key: String,
    /// Address to listen on; by default the one the simulated terminal reaches, or every
    /// address on a hardware rig.
    pub address: Option<IpAddr>,
    /// Port to listen on; 0 picks one.
    pub port: u16,
}

/// The simulated terminal's command line, placeholders not yet filled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// Program name or path.
    pub program: String,
    /// Arguments with `{console}`, `{nvm}`, `{card_slot}`, `{host}`, `{spec}` placeholders.
    pub args: Vec<String>,
}

/// Where power comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PowerConfig {
    /// Supervision of the simulated terminal's process.
    Sim {},
    /// A relay on a GPIO output in the terminal's supply.
    Relay(GpioRelayConfig),
}

/// What pushes cards.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CardFeederConfig {
    /// The simulated terminal's card slot file.
    Sim {},
    /// Push (and pull) solenoids with a card-present sensor.
    Solenoid(SolenoidFeederConfig),
    /// A servo on a PWM output, optionally with a card-present sensor.
    Servo(ServoFeederConfig),
}

/// Where the console is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConsoleConfig {
    /// A PTY the rig creates for the simulated terminal.
    SimPty {},
    /// A real serial port (a USB UART, the Pi's own UART).
    Serial(SerialSettings),
}

/// How the link is cut.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LinkConfig {
    /// `netns` with the privilege, `proxy` without (simulated terminal).
    Auto {},
    /// A veth pair into the simulated terminal's network namespace, switched by netlink.
    Netns {},
    /// A userspace TCP proxy between the simulated terminal and the host.
    Proxy {},
    /// A named interface (the terminal's Ethernet) switched by netlink.
    Netlink(NetlinkLinkConfig),
}

/// The simulated rig's link backends, as a command line or a test may choose them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkBackend {
    /// `netns` with the privilege, `proxy` without.
    Auto,
    /// A veth pair into the terminal's network namespace, switched by netlink.
    Netns,
    /// A userspace TCP proxy between terminal and host.
    Proxy,
}

/// Degradations of the terminal's traffic on a hardware rig.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ImpairmentConfig {
    /// Loss and blackhole through an nftables table the rig owns.
    Nftables(NftablesConfig),
    /// A userspace proxy the terminal connects to instead of the host: delay, drop, blackhole,
    /// reset. The terminal's host address must be set to `listen`.
    Proxy {
        /// Where the proxy listens, e.g. `0.0.0.0:5001`.
        listen: std::net::SocketAddr,
    },
}

/// A device the configuration names: checked to exist when the rig starts.
#[derive(Debug, Clone)]
struct Device {
    /// What it is, in words.
    what: &'static str,
    /// The path that must exist.
    path: PathBuf,
    /// What to say when it does not, with the file, line and field.
    missing: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rig: RawRig,
    gpio: Option<GpioConfig>,
    host: RawHost,
    terminal: Option<TerminalConfig>,
    power: PowerConfig,
    card_feeder: CardFeederConfig,
    console: ConsoleConfig,
    link: LinkConfig,
    impairment: Option<ImpairmentConfig>,
    #[serde(default)]
    inputs: Vec<WatchedInputConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRig {
    name: String,
    terminal_profile: Spanned<String>,
    cards: Spanned<String>,
    board: Option<Board>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    mode: Spanned<String>,
    spec: Spanned<String>,
    mac_key: Spanned<String>,
    upstream: Option<Spanned<String>>,
    address: Option<IpAddr>,
    #[serde(default)]
    port: u16,
}

impl RigConfig {
    /// Reads and validates a rig configuration.
    pub fn load(path: &Path) -> Result<RigConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RigError::io(format!("reading the rig configuration {}", path.display()), e))?;
        RigConfig::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names the file in errors and anchors
    /// relative paths. Devices are not looked for here but by [`RigConfig::check_devices`], so a
    /// configuration can be checked away from its rig.
    pub fn parse(text: &str, path: &Path) -> Result<RigConfig> {
        let layout = Layout::new(text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let mut at = e.span().map_or(0, |s| s.start);
            // Errors inside a backend's table carry the table's span: point at the field.
            if let Some(field) = locate::named_field(e.message()) {
                let table = layout.table_at(at).to_string();
                at = layout.key(&table, field).unwrap_or(at);
            }
            let message = e
                .message()
                .trim()
                .replace("there are no fields", "this backend takes no settings");
            layout.error(path, at, message)
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let existing = |value: &Spanned<String>, what: &str, want_dir: bool| -> Result<PathBuf> {
            let resolved = folder.join(value.get_ref());
            let found = if want_dir {
                resolved.is_dir()
            } else {
                resolved.is_file()
            };
            if found {
                return Ok(resolved);
            }
            let kind = if want_dir { "folder" } else { "file" };
            let problem = format!(
                "{what}: no {kind} {} (relative paths start at this file's folder)",
                resolved.display()
            );
            Err(layout.error(path, value.span().start, problem))
        };
        let rig = raw.rig;
        let host = host_config(&raw.host, &layout, path, &existing)?;
        let config = RigConfig {
            path: path.to_path_buf(),
            name: rig.name,
            terminal_profile: existing(&rig.terminal_profile, "terminal profile", false)?,
            cards: existing(&rig.cards, "card folder", true)?,
            board: rig.board,
            gpio: raw.gpio,
            host,
            terminal: raw.terminal,
            power: raw.power,
            card_feeder: raw.card_feeder,
            console: raw.console,
            link: raw.link,
            impairment: raw.impairment,
            inputs: raw.inputs,
            devices: Vec::new(),
        };
        checks::check(config, &layout)
    }

    /// True when the terminal is the simulated one (the `sim` power backend).
    pub fn simulated(&self) -> bool {
        self.power == PowerConfig::Sim {}
    }

    /// Checks that every device the configuration names (serial port, GPIO chip, network
    /// interface) is there; the error names the first missing one with its line.
    pub fn check_devices(&self) -> Result<()> {
        match self.devices.iter().find(|d| !d.path.exists()) {
            Some(device) => Err(RigError::Other(device.missing.clone())),
            None => Ok(()),
        }
    }

    /// The devices the configuration names, in words with their paths.
    pub fn devices(&self) -> Vec<(String, PathBuf)> {
        self.devices
            .iter()
            .map(|d| (d.what.to_string(), d.path.clone()))
            .collect()
    }
}

/// Resolves a configured path and checks that it exists: (value, what it is, a folder?).
type ExistingPath<'a> = dyn Fn(&Spanned<String>, &str, bool) -> Result<PathBuf> + 'a;

/// The host table, checked.
fn host_config(
    raw: &RawHost,
    layout: &Layout<'_>,
    path: &Path,
    existing: &ExistingPath<'_>,
) -> Result<HostConfig> {
    let mode = match (raw.mode.get_ref().as_str(), &raw.upstream) {
        ("simulator", None) => HostMode::Simulator,
        ("simulator", Some(upstream)) => {
            let problem = "upstream is for mode = \"proxy\"; the simulator answers by itself";
            return Err(layout.error(path, upstream.span().start, problem));
        }
        ("proxy", Some(upstream)) => HostMode::Proxy {
            upstream: upstream.get_ref().clone(),
        },
        ("proxy", None) => {
            let problem = "a proxy needs upstream = \"HOST:PORT\", the real acquirer test host";
            return Err(layout.error(path, raw.mode.span().start, problem));
        }
        (other, _) => {
            let problem = format!("host mode {other:?} is unknown; use \"simulator\" or \"proxy\"");
            return Err(layout.error(path, raw.mode.span().start, problem));
        }
    };
    let key = raw.mac_key.get_ref();
    if key.len() != 16 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
        let problem = "a MAC key is 16 hexadecimal digits";
        return Err(layout.error(path, raw.mac_key.span().start, problem));
    }
    Ok(HostConfig {
        mode,
        spec: existing(&raw.spec, "message spec", false)?,
        mac_key: key.clone(),
        address: raw.address,
        port: raw.port,
    })
}

#[cfg(test)]
mod tests;
