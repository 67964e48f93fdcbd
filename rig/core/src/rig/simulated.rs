//! The simulated rig: posterm (or a vendor's emulator) as a process on a PTY, with its NVM
//! folder and card slot, behind a network namespace or a userspace proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::actuators::Capabilities;
use crate::capability::{Console, Link, NetworkImpairment};
use crate::config::{LinkBackend, LinkConfig};
use crate::error::{Result, RigError};
use crate::serial::SerialConsole;
use crate::sim::card::SimCardFeeder;
use crate::sim::netns::{NetnsAddresses, NetnsLink};
use crate::sim::power::{locate_program, SimPower, TerminalCommand};
use crate::sim::proxy::ProxyLink;

use super::{Assembly, LinkKind, Parts};

/// Assembles the simulated rig. The terminal is started later, by the safe state (power on).
pub(super) fn assemble(a: Assembly<'_>) -> Result<Parts> {
    let config = a.config;
    let configured = match &config.link {
        LinkConfig::Auto {} => LinkBackend::Auto,
        LinkConfig::Netns {} => LinkBackend::Netns,
        LinkConfig::Proxy {} => LinkBackend::Proxy,
        LinkConfig::Netlink(_) => unreachable!("the configuration refuses netlink on a simulated rig"),
    };
    let link_kind = choose_link(a.options.link.unwrap_or(configured))?;
    let netns = match link_kind {
        LinkKind::Netns => {
            let tag = a
                .options
                .link_tag
                .clone()
                .unwrap_or_else(|| fresh_link_tag(&config.name));
            Some(Arc::new(NetnsLink::create_with_addresses(
                &tag,
                link_addresses(&tag),
            )?))
        }
        _ => None,
    };
    let host_ip = netns
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |n| IpAddr::V4(n.rig_address()));
    let host = a.start_host(SocketAddr::new(
        config.host.address.unwrap_or(host_ip),
        config.host.port,
    ))?;
    // The terminal reaches the host through the userspace proxy on either link: on the proxy link
    // it is also what cuts the link; behind a veth it gives the delay, loss and resets netlink
    // cannot.
    let prefix = a.codec.spec().frame.length_prefix_bytes;
    let proxy = Arc::new(ProxyLink::start(
        SocketAddr::new(host_ip, 0),
        host.addr(),
        prefix,
    )?);
    super::mirror_maintenance(&host, &proxy);
    let terminal_reaches_host = proxy.addr();
    let console = Arc::new(SerialConsole::pty(a.profile.clone(), a.sink.clone())?);

    let terminal = config
        .terminal
        .as_ref()
        .ok_or_else(|| RigError::Missing("terminal program".into()))?;
    let card_slot = a.workdir.join("card-slot");
    let fill = |arg: &str| {
        arg.replace("{console}", &console.device())
            .replace("{nvm}", &a.workdir.join("nvm").display().to_string())
            .replace("{card_slot}", &card_slot.display().to_string())
            .replace("{host}", &terminal_reaches_host.to_string())
            .replace("{spec}", &config.host.spec.display().to_string())
    };
    let mut args: Vec<String> = terminal.args.iter().map(|arg| fill(arg)).collect();
    args.extend(a.options.terminal_args.iter().cloned());
    let power = SimPower::new(TerminalCommand {
        program: locate_program(&terminal.program),
        args,
        namespace: netns.as_ref().map(|n| n.namespace_path()),
        stderr: a.workdir.join("terminal.stderr"),
    });
    let impairment: Arc<dyn NetworkImpairment> = proxy.clone();
    let link: Arc<dyn Link> = match netns {
        Some(netns) => netns,
        None => proxy,
    };
    Ok(Parts {
        capabilities: Capabilities {
            power: Some(Arc::new(power)),
            card: Some(Arc::new(SimCardFeeder::new(&card_slot, &config.cards))),
            link: Some(link),
            impairment: Some(impairment),
            console: Some(console.clone()),
        },
        console,
        host,
        link_kind,
        inputs: None,
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
