//! `rigctl`: start a rig and drive it by hand — power, card, link, console, host journal.
//!
//! `rigctl up` runs the rig (the simulated one by default) in the foreground; every other command
//! talks to that running rig through its Unix socket.

mod client;
mod protocol;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use posrig_core::actuators::Action;
use posrig_core::config::{LinkBackend, RigConfig};
use posrig_core::rig::{Rig, RigOptions};

use crate::protocol::{socket_path, Request};

/// Drive a posrig rig from the command line.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The rig configuration.
    #[arg(long, global = true, default_value = "fixtures/rigs/sim.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the rig and keep it running for manual work (Ctrl-C stops it, safely).
    Up {
        /// Override the configuration's link backend.
        #[arg(long, value_enum)]
        link: Option<LinkChoice>,
        /// Extra argument for the simulated terminal (repeatable), e.g. --terminal-arg=--defect=reversal_after_send
        #[arg(long = "terminal-arg", allow_hyphen_values = true)]
        terminal_args: Vec<String>,
    },
    /// Check the rig configuration and look for the devices it names, without starting it.
    Check,
    /// Power, card, link and host of the running rig.
    Status,
    /// Switch the terminal's power.
    Power {
        #[command(subcommand)]
        switch: PowerCommand,
    },
    /// Insert or remove the card.
    Card {
        #[command(subcommand)]
        card: CardCommand,
    },
    /// Take the network link down or up, or flap it.
    Link {
        #[command(subcommand)]
        link: LinkCommand,
    },
    /// Read or type on the terminal's console.
    Console {
        #[command(subcommand)]
        console: ConsoleCommand,
    },
    /// Read the acquirer host's wire journal.
    Host {
        #[command(subcommand)]
        host: HostCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LinkChoice {
    Auto,
    Netns,
    Proxy,
}

#[derive(Subcommand)]
enum PowerCommand {
    /// Restore power.
    On,
    /// Cut power.
    Off,
    /// Cut power, wait, restore it.
    Cycle {
        /// How long the power stays off, in milliseconds.
        #[arg(long, default_value_t = 500)]
        off_ms: u64,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Insert a card by profile name (fixtures/cards/NAME.toml).
    Insert {
        /// The card profile name.
        name: String,
    },
    /// Pull the card out.
    Remove,
}

#[derive(Subcommand)]
enum LinkCommand {
    /// Take the link down.
    Down,
    /// Bring the link up.
    Up,
    /// Take the link down, wait, bring it up.
    Flap {
        /// How long the link stays down, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        down_ms: u64,
    },
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// Print the console lines (and keep following with -f).
    Tail {
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Type a line on the console, e.g. "sale 12345".
    Send {
        /// The text to type.
        text: String,
    },
}

#[derive(Subcommand)]
enum HostCommand {
    /// Print the wire journal (and keep following with -f).
    Journal {
        /// Keep printing new entries.
        #[arg(short, long)]
        follow: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rigctl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let config = RigConfig::load(&cli.config).map_err(|e| e.to_string())?;
    let socket = socket_path(&config.name);
    let request = match cli.command {
        Command::Up { link, terminal_args } => {
            let options = RigOptions {
                terminal_args,
                link: link.map(|l| match l {
                    LinkChoice::Auto => LinkBackend::Auto,
                    LinkChoice::Netns => LinkBackend::Netns,
                    LinkChoice::Proxy => LinkBackend::Proxy,
                }),
                link_tag: Some(config.name.clone()),
                workdir: None,
            };
            let rig = Rig::start(&config, options).map_err(|e| e.to_string())?;
            let ready = rig.wait_event(0, Duration::from_secs(15), &["ready"]);
            if let Err(e) = ready {
                eprintln!("rigctl: the terminal is not ready yet: {e}");
            }
            return serve::serve(rig, &socket);
        }
        Command::Check => {
            for (what, path) in config.devices() {
                let found = if path.exists() { "present" } else { "MISSING" };
                println!("{what:<18} {:<60} {found}", path.display());
            }
            config.check_devices().map_err(|e| e.to_string())?;
            println!(
                "{}: the configuration is valid and every device it names is here",
                cli.config.display()
            );
            return Ok(());
        }
        Command::Status => Request::Status,
        Command::Power { switch } => match switch {
            PowerCommand::On => perform(Action::PowerOn),
            PowerCommand::Off => perform(Action::PowerOff),
            PowerCommand::Cycle { off_ms } => Request::PerformFor {
                action: Action::PowerOff,
                hold_ms: off_ms,
            },
        },
        Command::Card { card } => match card {
            CardCommand::Insert { name } => perform(Action::CardInsert { card: name }),
            CardCommand::Remove => perform(Action::CardRemove),
        },
        Command::Link { link } => match link {
            LinkCommand::Down => perform(Action::LinkDown),
            LinkCommand::Up => perform(Action::LinkUp),
            LinkCommand::Flap { down_ms } => Request::PerformFor {
                action: Action::LinkDown,
                hold_ms: down_ms,
            },
        },
        Command::Console { console } => match console {
            ConsoleCommand::Tail { follow } => Request::Console { since: 0, follow },
            ConsoleCommand::Send { text } => Request::Type { text },
        },
        Command::Host { host } => match host {
            HostCommand::Journal { follow } => Request::Journal { since: 0, follow },
        },
    };
    client::ask(&socket, &request)
}

fn perform(action: Action) -> Request {
    Request::Perform { action }
}
