//! `acqhost`: the acquirer host simulator on its own, for manual work and for the simulated lab.
//!
//! Prints one line `ready host=ADDR control=ADDR` once both ports listen, then serves until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use posrig_host::{control, Host, HostConfig, Settings};
use posrig_iso8583::{Codec, MacKey, Spec};
use tokio::signal::unix::{signal, SignalKind};

/// Acquirer host simulator: sign-on, sale, void, reversal, settlement, with fault knobs.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The message spec.
    #[arg(long, default_value = "fixtures/iso8583/cup.toml")]
    spec: PathBuf,
    /// Address terminals connect to (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Address of the JSON control port (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5001")]
    control: SocketAddr,
    /// MAC working key shared with the terminals, 16 hex characters.
    #[arg(long, default_value = "0123456789ABCDEF")]
    mac_key: String,
    /// Apply every reversal and void received, even repeated ones (to prove suites notice).
    #[arg(long)]
    no_idempotency: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("acqhost: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("acqhost: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let spec = Spec::load(&cli.spec).map_err(|e| e.to_string())?;
    let mac_key = MacKey::from_hex(&cli.mac_key).map_err(|e| format!("--mac-key: {e}"))?;
    let settings = Settings {
        idempotent_reversals: !cli.no_idempotency,
        idempotent_voids: !cli.no_idempotency,
        maintenance: false,
    };
    let config = HostConfig {
        listen: cli.listen,
        codec: Codec::new(spec),
        mac_key,
        settings,
    };
    let host = Host::start(config)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let control_listener = tokio::net::TcpListener::bind(cli.control)
        .await
        .map_err(|e| format!("cannot listen for control on {}: {e}", cli.control))?;
    let control_addr = control_listener.local_addr().map_err(|e| e.to_string())?;
    println!("ready host={} control={control_addr}", host.addr());
    let host = Arc::new(host);
    tokio::spawn(control::serve(control_listener, host.clone()));
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
