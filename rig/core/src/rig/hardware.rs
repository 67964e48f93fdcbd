//! The hardware rig: a real terminal on GPIO relays and feeders (rppal on a Pi, the GPIO
//! character device elsewhere), a real serial port, a real interface switched by netlink, and
//! nftables or the userspace proxy for impairments. Each backend reaches its safe state as it
//! is opened (relay powered, feeder out, link up, no rules), before the host listens or the
//! console is read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::actuators::Capabilities;
use crate::capability::{CardFeeder, NetworkImpairment};
use crate::config::{
    CardFeederConfig, ConsoleConfig, GpioConfig, ImpairmentConfig, LinkConfig, PowerConfig, RigConfig,
};
use crate::error::{Result, RigError};
use crate::gpio::{CdevGpio, GpioDriver, GpioRelay, InputWatcher, RppalGpio, ServoFeeder, SolenoidFeeder};
use crate::linux::netlink_link::NetlinkLink;
use crate::linux::nftables::NftablesImpairment;
use crate::serial::SerialConsole;
use crate::sim::proxy::ProxyLink;

use super::{Assembly, LinkKind, Parts};

/// Assembles the hardware rig, actuators first.
pub(super) fn assemble(a: Assembly<'_>) -> Result<Parts> {
    let config = a.config;
    let gpio = open_gpio(config)?;
    let driver = || -> Result<&dyn GpioDriver> {
        gpio.as_deref()
            .ok_or_else(|| RigError::Missing("GPIO driver ([gpio] table)".into()))
    };
    let power = match &config.power {
        PowerConfig::Relay(relay) => Arc::new(GpioRelay::new(driver()?, relay)?),
        PowerConfig::Sim {} => unreachable!("the hardware rig has a relay"),
    };
    let card: Arc<dyn CardFeeder> = match &config.card_feeder {
        CardFeederConfig::Solenoid(solenoid) => Arc::new(SolenoidFeeder::new(driver()?, solenoid)?),
        CardFeederConfig::Servo(servo) => Arc::new(ServoFeeder::new(driver()?, servo)?),
        CardFeederConfig::Sim {} => unreachable!("the configuration refuses the sim feeder here"),
    };
    let link = match &config.link {
        LinkConfig::Netlink(link) => Arc::new(NetlinkLink::open(link)?),
        _ => unreachable!("the configuration refuses simulated links here"),
    };
    let nftables = match &config.impairment {
        Some(ImpairmentConfig::Nftables(nftables)) => {
            Some(Arc::new(NftablesImpairment::new(&config.name, nftables)?))
        }
        _ => None,
    };
    let inputs = match gpio.as_deref() {
        Some(driver) if !config.inputs.is_empty() => {
            Some(InputWatcher::start(driver, &config.inputs, a.timeline.clone())?)
        }
        _ => None,
    };

    let listen = SocketAddr::new(
        config.host.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        config.host.port,
    );
    let host = a.start_host(listen)?;
    let impairment: Option<Arc<dyn NetworkImpairment>> = match &config.impairment {
        Some(ImpairmentConfig::Proxy { listen }) => {
            let prefix = a.codec.spec().frame.length_prefix_bytes;
            let proxy = Arc::new(ProxyLink::start(*listen, host.addr(), prefix)?);
            super::mirror_maintenance(&host, &proxy);
            Some(proxy)
        }
        _ => nftables.map(|n| n as Arc<dyn NetworkImpairment>),
    };
    let console = Arc::new(match &config.console {
        ConsoleConfig::Serial(settings) => SerialConsole::open(settings, a.profile.clone(), a.sink.clone())?,
        ConsoleConfig::SimPty {} => unreachable!("the configuration refuses sim-pty here"),
    });
    Ok(Parts {
        capabilities: Capabilities {
            power: Some(power),
            card: Some(card),
            link: Some(link),
            impairment,
            console: Some(console.clone()),
        },
        console,
        host,
        link_kind: LinkKind::Netlink,
        inputs,
    })
}

/// The GPIO driver the configuration names, if any.
fn open_gpio(config: &RigConfig) -> Result<Option<Box<dyn GpioDriver>>> {
    Ok(match (&config.gpio, config.board) {
        (Some(GpioConfig::Rppal {}), Some(board)) => Some(Box::new(RppalGpio::new(board)?)),
        (Some(GpioConfig::Rppal {}), None) => {
            return Err(RigError::Missing(
                "board for the rppal driver ([rig] board)".into(),
            ))
        }
        (Some(GpioConfig::Cdev(cdev)), _) => Some(Box::new(CdevGpio::open(cdev)?)),
        (None, _) => None,
    })
}
