//! `posterm`: a simulated POS terminal that behaves like the correct terminal of domain.md §3.
//!
//! Its console is a serial device (`--console`), its flash is a folder (`--nvm`), its card slot is
//! a file (`--card-slot`), and it talks CUP ISO 8583 to the acquirer over TCP (`--host`).

mod card;
mod clock;
mod console;
mod emv;
mod link;
mod nvm;
mod settings;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use posrig_iso8583::{Codec, Spec};

use crate::card::CardSlot;
use crate::console::Console;
use crate::nvm::Nvm;
use crate::settings::{Defects, Settings};
use crate::terminal::{Terminal, Wiring};

/// Simulated POS terminal firmware.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Serial device of the console (a PTY on the simulated rig).
    #[arg(long, required_unless_present = "list_defects")]
    console: Option<String>,
    /// Folder holding the NVM (flash) image.
    #[arg(long, required_unless_present = "list_defects")]
    nvm: Option<PathBuf>,
    /// File naming the inserted card's profile; missing or empty means no card.
    #[arg(long, required_unless_present = "list_defects")]
    card_slot: Option<PathBuf>,
    /// Acquirer host, host:port.
    #[arg(long, required_unless_present = "list_defects")]
    host: Option<String>,
    /// The message spec.
    #[arg(long, default_value = "fixtures/iso8583/cup.toml")]
    spec: PathBuf,
    /// Settings file (identity, policy, timing, defects); defaults when absent.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Override one setting, e.g. --set policy.response_timeout_ms=1000 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Seed a defect by name, e.g. --defect reversal_after_send (repeatable).
    #[arg(long = "defect", value_name = "NAME")]
    defects: Vec<String>,
    /// Print the names of the seedable defects, one per line, and exit.
    #[arg(long)]
    list_defects: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_defects {
        println!("{}", Defects::NAMES.join("\n"));
        return ExitCode::SUCCESS;
    }
    match start(cli) {
        Ok(terminal) => terminal.run(),
        Err(message) => {
            eprintln!("posterm: {message}");
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> Result<Terminal, String> {
    let missing = |flag: &str| format!("{flag} is required");
    let settings = Settings::load(cli.settings.as_deref(), &cli.overrides, &cli.defects)?;
    let spec = Spec::load(&cli.spec).map_err(|e| e.to_string())?;
    let nvm_dir = cli.nvm.ok_or_else(|| missing("--nvm"))?;
    let nvm = Nvm::open(&nvm_dir, Duration::from_millis(settings.timing.flash_write_ms))?;
    let console = Console::open(&cli.console.ok_or_else(|| missing("--console"))?)?;
    Ok(Terminal::new(Wiring {
        settings,
        codec: Codec::new(spec),
        console,
        nvm,
        slot: CardSlot::new(&cli.card_slot.ok_or_else(|| missing("--card-slot"))?),
        host: cli.host.ok_or_else(|| missing("--host"))?,
    }))
}
