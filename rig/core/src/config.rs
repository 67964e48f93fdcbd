//! Rig configuration: one TOML file per rig naming a backend for each capability, the terminal
//! profile, the host and its spec. Every value is checked when the rig is built; errors name the
//! file, the line and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Result, RigError};

/// A rig configuration, validated, with paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct RigConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The rig's name (used for sockets, namespaces and records).
    pub name: String,
    /// The terminal profile.
    pub terminal_profile: PathBuf,
    /// The folder of card profiles.
    pub cards: PathBuf,
    /// The acquirer host.
    pub host: HostConfig,
    /// How to start the simulated terminal, for the `sim` power backend.
    pub terminal: Option<TerminalConfig>,
    /// Power backend.
    pub power: PowerBackend,
    /// Card feeder backend.
    pub card_feeder: CardBackend,
    /// Console backend.
    pub console: ConsoleBackend,
    /// Link backend.
    pub link: LinkBackend,
}

/// The acquirer host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The message spec.
    pub spec: PathBuf,
    /// MAC working key, 16 hex digits.
    pub mac_key: String,
    /// Port to listen on; 0 picks one.
    pub port: u16,
}

/// The simulated terminal's command line, placeholders not yet filled.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Program name or path.
    pub program: String,
    /// Arguments with `{console}`, `{nvm}`, `{card_slot}`, `{host}`, `{spec}` placeholders.
    pub args: Vec<String>,
}

/// Where power comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerBackend {
    /// Supervision of the simulated terminal's process.
    Sim,
}

/// What pushes cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardBackend {
    /// The simulated terminal's card slot file.
    Sim,
}

/// Where the console is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleBackend {
    /// A PTY the rig creates for the simulated terminal.
    SimPty,
}

/// How the link is cut and degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkBackend {
    /// `netns` with the privilege, `proxy` without.
    Auto,
    /// A veth pair into the terminal's network namespace, switched by netlink.
    Netns,
    /// A userspace TCP proxy between terminal and host.
    Proxy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rig: RawRig,
    host: RawHost,
    terminal: Option<RawTerminal>,
    power: Backend<PowerBackend>,
    card_feeder: Backend<CardBackend>,
    console: Backend<ConsoleBackend>,
    link: Backend<LinkBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRig {
    name: String,
    terminal_profile: Spanned<String>,
    cards: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    mode: Spanned<String>,
    spec: Spanned<String>,
    mac_key: Spanned<String>,
    #[serde(default)]
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerminal {
    program: String,
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Backend<T> {
    backend: T,
}

impl RigConfig {
    /// Reads and validates a rig configuration.
    pub fn load(path: &Path) -> Result<RigConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RigError::io(format!("reading the rig configuration {}", path.display()), e))?;
        RigConfig::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names the file in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<RigConfig> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            config_error(path, text, at, e.message().to_string())
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let existing = |value: &Spanned<String>, what: &str, want_dir: bool| -> Result<PathBuf> {
            let resolved = folder.join(value.get_ref());
            let ok = if want_dir {
                resolved.is_dir()
            } else {
                resolved.is_file()
            };
            if ok {
                Ok(resolved)
            } else {
                let kind = if want_dir { "folder" } else { "file" };
                let problem = format!(
                    "{what}: no {kind} {} (relative paths start at this file's folder)",
                    resolved.display()
                );
                Err(config_error(path, text, value.span().start, problem))
            }
        };
        let rig = raw.rig;
        if raw.host.mode.get_ref() != "simulator" {
            let problem = format!(
                "host mode {:?} is not available yet; use \"simulator\"",
                raw.host.mode.get_ref()
            );
            return Err(config_error(path, text, raw.host.mode.span().start, problem));
        }
        let key = raw.host.mac_key.get_ref();
        if key.len() != 16 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
            let problem = "a MAC key is 16 hexadecimal digits".to_string();
            return Err(config_error(path, text, raw.host.mac_key.span().start, problem));
        }
        let config = RigConfig {
            path: path.to_path_buf(),
            name: rig.name,
            terminal_profile: existing(&rig.terminal_profile, "terminal profile", false)?,
            cards: existing(&rig.cards, "card folder", true)?,
            host: HostConfig {
                spec: existing(&raw.host.spec, "message spec", false)?,
                mac_key: key.clone(),
                port: raw.host.port,
            },
            terminal: raw.terminal.map(|t| TerminalConfig {
                program: t.program,
                args: t.args,
            }),
            power: raw.power.backend,
            card_feeder: raw.card_feeder.backend,
            console: raw.console.backend,
            link: raw.link.backend,
        };
        if config.power == PowerBackend::Sim && config.terminal.is_none() {
            return Err(RigError::Config {
                path: path.to_path_buf(),
                line: 0,
                field: "terminal".into(),
                problem: "the sim power backend starts the terminal program: add a [terminal] table with program and args".into(),
            });
        }
        Ok(config)
    }
}

/// A configuration error at byte `at` of `text`: the line, and the dotted key written there.
fn config_error(path: &Path, text: &str, at: usize, problem: String) -> RigError {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or_default();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).to_string());
    let key = line_text.split_once('=').map(|(k, _)| k.trim().to_string());
    let field = match (table, key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (Some(table), None) => table,
        (None, Some(key)) => key,
        (None, None) => "(top level)".into(),
    };
    RigError::Config {
        path: path.to_path_buf(),
        line,
        field,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_text() -> (PathBuf, String) {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/rigs/sim.toml"
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    fn error_of(find: &str, replace: &str) -> String {
        let (path, text) = default_text();
        assert!(text.contains(find), "{find}");
        RigConfig::parse(&text.replacen(find, replace, 1), &path)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_default_rig_configuration_is_valid() {
        let (path, text) = default_text();
        let config = RigConfig::parse(&text, &path).unwrap();
        assert_eq!(config.link, LinkBackend::Auto);
        assert!(config.terminal_profile.is_file());
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let unknown = error_of(
            "backend = \"sim\"\n\n[card_feeder]",
            "backend = \"relay\"\n\n[card_feeder]",
        );
        assert!(unknown.contains("sim.toml:"), "{unknown}");
        assert!(unknown.contains("power.backend"), "{unknown}");
        assert!(unknown.contains("relay"), "{unknown}");
        let missing = error_of("\"../cards\"", "\"../no-such-cards\"");
        assert!(
            missing.contains("rig.cards") && missing.contains("no-such-cards"),
            "{missing}"
        );
        let key = error_of("\"0123456789ABCDEF\"", "\"0123\"");
        assert!(
            key.contains("host.mac_key") && key.contains("16 hexadecimal"),
            "{key}"
        );
        let typo = error_of("port = 0", "prot = 0");
        assert!(typo.contains("prot"), "{typo}");
    }

    #[test]
    fn the_line_number_points_at_the_mistake() {
        let (path, text) = default_text();
        let broken = text.replacen("backend = \"auto\"", "backend = \"wifi\"", 1);
        let line = broken.lines().position(|l| l.contains("wifi")).unwrap() + 1;
        let message = RigConfig::parse(&broken, &path).unwrap_err().to_string();
        assert!(
            message.contains(&format!("sim.toml:{line}: link.backend")),
            "{message}"
        );
    }
}
