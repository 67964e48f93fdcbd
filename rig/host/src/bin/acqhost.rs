//! `acqhost`: the acquirer host simulator on its own, for manual work and for the simulated lab;
//! with `--upstream HOST:PORT`, a proxy in front of a real acquirer test host instead.
//!
//! Prints one line `ready host=ADDR control=ADDR` (and ` upstream=ADDR` in proxy mode) once both
//! ports listen, then serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use posrig_host::{control, Host, HostConfig, Mode, Settings};
use posrig_iso8583::{Codec, MacKey, Spec};
use tokio::signal::unix::{signal, SignalKind};

/// Acquirer host simulator (sign-on, sale, void, reversal, settlement) or proxy to a real test
/// host, with fault knobs.
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
    #[arg(long, conflicts_with = "upstream")]
    no_idempotency: bool,
    /// Proxy mode: relay every terminal connection to this real acquirer test host, journal
    /// both directions and apply the fault knobs on the way.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: Option<String>,
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
    let mode = match &cli.upstream {
        Some(upstream) => Mode::Proxy {
            upstream: resolve(upstream).await?,
        },
        None => Mode::Simulator,
    };
    let config = HostConfig {
        listen: cli.listen,
        codec: Codec::new(spec),
        mac_key,
        settings,
    };
    let host = Host::start_with_mode(config, mode)
        .await
        .map_err(|e| format!("cannot start the host on {}: {e}", cli.listen))?;
    let control_listener = tokio::net::TcpListener::bind(cli.control)
        .await
        .map_err(|e| format!("cannot listen for control on {}: {e}", cli.control))?;
    let control_addr = control_listener.local_addr().map_err(|e| e.to_string())?;
    match mode {
        Mode::Proxy { upstream } => {
            println!(
                "ready host={} control={control_addr} upstream={upstream}",
                host.addr()
            )
        }
        Mode::Simulator => println!("ready host={} control={control_addr}", host.addr()),
    }
    let host = Arc::new(host);
    tokio::spawn(control::serve(control_listener, host.clone()));
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The first address `upstream` (HOST:PORT) resolves to.
async fn resolve(upstream: &str) -> Result<SocketAddr, String> {
    let mut addresses = tokio::net::lookup_host(upstream)
        .await
        .map_err(|e| format!("--upstream {upstream:?}: cannot resolve it as HOST:PORT: {e}"))?;
    addresses
        .next()
        .ok_or_else(|| format!("--upstream {upstream:?}: the name resolves to no address"))
}
