//! The terminal's link on a real interface (the USB Ethernet adapter the terminal is plugged
//! into, say), taken down and up through netlink, like `ip link set <interface> down|up`.
//!
//! Taking the rig's end of the cable down makes the terminal lose its carrier: new connections
//! fail, open connections stop passing data and resume when the link comes back up.
//!
//! # Safe state
//!
//! The link is up on start and on exit: [`NetlinkLink::open`] brings the interface up (a rig
//! killed while the link was down leaves it down), and dropping the link brings it up again.
//!
//! # A replugged adapter
//!
//! Requests go by interface index, looked up by name when the link is opened. A USB adapter that
//! is unplugged and plugged back in comes back under a new index: a request that finds the old
//! index gone looks the name up again and carries on.
//!
//! # Privilege
//!
//! Setting an interface up or down needs `CAP_NET_ADMIN` (run the rig as root); reading its
//! state does not.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtnetlink::packet_route::link::LinkFlags;
use rtnetlink::Handle;
use serde::{Deserialize, Serialize};

use crate::capability::Link;
use crate::error::{Result, RigError};
use crate::linux::namespace::{describe_namespace, namespace_path};
use crate::linux::netlink::{
    describe, find_link, get_link, is_errno, link_names, set_link_up, NetlinkWorker,
};

/// How long `down()`, `up()` and `is_up()` wait for the kernel's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest interface name Linux accepts (IFNAMSIZ less the terminating NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Which interface a [`NetlinkLink`] switches (the `[link]` table of a rig using the `netlink`
/// backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetlinkLinkConfig {
    /// The interface the terminal is plugged into, e.g. `eth1` (as `ip link` shows it).
    pub interface: String,
    /// The network namespace the interface lives in: a name from `ip netns list`, or the path of
    /// a namespace file. The rig's own namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Checks an interface name as Linux would, in a sentence a lab engineer can act on.
pub(crate) fn validate_interface_name(interface: &str) -> std::result::Result<(), String> {
    let acceptable = |character: char| character.is_ascii_graphic() && !matches!(character, '/' | ':' | '"');
    if interface.is_empty()
        || interface.len() > MAX_INTERFACE_NAME_LEN
        || !interface.chars().all(acceptable)
        || interface == "."
        || interface == ".."
    {
        return Err(format!(
            "the interface name {interface:?} is not a Linux interface name: 1 to \
             {MAX_INTERFACE_NAME_LEN} printable ASCII characters without spaces, '/', ':' or '\"' \
             (see `ip link` for the names on this machine)"
        ));
    }
    Ok(())
}

/// The terminal's link on a named, existing interface, switched through netlink.
///
/// A worker thread keeps a netlink connection open in the interface's namespace, so `down()`,
/// `up()` and `is_up()` each cost one netlink round trip and may be called from any thread.
#[derive(Debug)]
pub struct NetlinkLink {
    interface: String,
    namespace: Option<PathBuf>,
    /// The interface's index, refreshed when the interface comes back under another one.
    index: Arc<AtomicU32>,
    worker: NetlinkWorker,
}

impl NetlinkLink {
    /// Opens the link on `config.interface` and brings the interface up (the safe state). A
    /// missing interface is an error naming it and listing the interfaces that exist.
    pub fn open(config: &NetlinkLinkConfig) -> Result<NetlinkLink> {
        let capability = format!("link (netlink {})", config.interface);
        let failure = |reason: String| RigError::actuator(&capability, "open", reason);
        validate_interface_name(&config.interface).map_err(failure)?;
        let namespace = config.namespace.as_deref().map(namespace_path);
        let worker = NetlinkWorker::start(namespace.clone()).map_err(failure)?;
        let (interface, inside) = (config.interface.clone(), namespace.clone());
        let index = worker
            .call(REQUEST_TIMEOUT, move |handle| async move {
                let index = resolve(&handle, &interface, inside.as_deref()).await?;
                set_link_up(&handle, index, true)
                    .await
                    .map_err(|error| describe(&format!("setting {interface} up"), &error))?;
                Ok(index)
            })
            .map_err(failure)?;
        Ok(NetlinkLink {
            interface: config.interface.clone(),
            namespace,
            index: Arc::new(AtomicU32::new(index)),
            worker,
        })
    }

    /// The interface this link switches.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Runs a request on the worker, with the interface's name, namespace and index at hand.
    fn request<T, JobFn, JobFuture>(&self, action: &str, job: JobFn) -> Result<T>
    where
        T: Send + 'static,
        JobFn: FnOnce(Handle, String, Option<PathBuf>, Arc<AtomicU32>) -> JobFuture + Send + 'static,
        JobFuture: std::future::Future<Output = std::result::Result<T, String>> + 'static,
    {
        let (interface, namespace, index) =
            (self.interface.clone(), self.namespace.clone(), self.index.clone());
        self.worker
            .call(REQUEST_TIMEOUT, move |handle| {
                job(handle, interface, namespace, index)
            })
            .map_err(|reason| {
                RigError::actuator(&format!("link (netlink {})", self.interface), action, reason)
            })
    }

    /// Sets the interface up or down, looking it up again if its index has gone.
    fn set(&self, up: bool) -> Result<()> {
        self.request(
            if up { "up" } else { "down" },
            move |handle, interface, namespace, index| async move {
                let doing = format!("setting {interface} {}", if up { "up" } else { "down" });
                match set_link_up(&handle, index.load(Ordering::Relaxed), up).await {
                    Err(error) if is_errno(&error, libc::ENODEV) => {
                        let current = resolve(&handle, &interface, namespace.as_deref()).await?;
                        index.store(current, Ordering::Relaxed);
                        set_link_up(&handle, current, up)
                            .await
                            .map_err(|error| describe(&doing, &error))
                    }
                    outcome => outcome.map_err(|error| describe(&doing, &error)),
                }
            },
        )
    }
}

impl Link for NetlinkLink {
    /// Sets the interface administratively down: the terminal loses its carrier.
    fn down(&self) -> Result<()> {
        self.set(false)
    }

    /// Sets the interface administratively up. Returns once the kernel has accepted the change;
    /// the carrier comes back when the terminal's side has negotiated (a second or two on a real
    /// Ethernet, moments on a veth).
    fn up(&self) -> Result<()> {
        self.set(true)
    }

    /// True while the interface is administratively up.
    fn is_up(&self) -> Result<bool> {
        self.request("read state", |handle, interface, namespace, index| async move {
            let link = match get_link(&handle, index.load(Ordering::Relaxed)).await {
                Err(error) if is_errno(&error, libc::ENODEV) => {
                    let current = resolve(&handle, &interface, namespace.as_deref()).await?;
                    index.store(current, Ordering::Relaxed);
                    get_link(&handle, current).await
                }
                outcome => outcome,
            }
            .map_err(|error| describe(&format!("reading the state of {interface}"), &error))?;
            Ok(link.header.flags.contains(LinkFlags::Up))
        })
    }
}

impl Drop for NetlinkLink {
    /// Brings the interface up (the safe state on exit). Never panics: a failure is reported on
    /// stderr, and the next [`NetlinkLink::open`] brings the interface up.
    fn drop(&mut self) {
        if let Err(error) = self.set(true) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "posrig: {error}; bring it up with `ip link set {} up`",
                self.interface
            );
        }
    }
}

/// The index of the interface named `interface`; when there is none, an error naming it and
/// listing the interfaces that exist.
async fn resolve(
    handle: &Handle,
    interface: &str,
    namespace: Option<&std::path::Path>,
) -> std::result::Result<u32, String> {
    let found = find_link(handle, interface)
        .await
        .map_err(|error| describe(&format!("looking up {interface}"), &error))?;
    if let Some(link) = found {
        return Ok(link.header.index);
    }
    let existing = link_names(handle)
        .await
        .map_err(|error| describe("listing the interfaces", &error))?;
    Err(format!(
        "there is no interface {interface:?} in {}; the interfaces there are: {} (check the name \
         in the rig configuration, and that the adapter is plugged in)",
        describe_namespace(namespace),
        existing.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_like_linux_does() {
        assert_eq!(validate_interface_name("eth1"), Ok(()));
        assert_eq!(validate_interface_name("enx00e04c680001"), Ok(()));
        for bad in ["", "enx00e04c6800011", "eth 1", "a/b", "eth0:1", "\"x", ".."] {
            let problem = validate_interface_name(bad).expect_err("refused");
            assert!(problem.contains("not a Linux interface name"), "{bad}: {problem}");
        }
    }

    #[test]
    fn config_refuses_unknown_fields() {
        let config: NetlinkLinkConfig = toml::from_str("interface = \"eth1\"").expect("parses");
        assert_eq!(config.interface, "eth1");
        assert_eq!(config.namespace, None);
        let error = toml::from_str::<NetlinkLinkConfig>("interface = \"eth1\"\nifname = \"eth2\"")
            .expect_err("unknown field");
        assert!(error.to_string().contains("ifname"), "{error}");
    }
}
