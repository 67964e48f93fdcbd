//! The simulated terminal's network link: the terminal runs in its own network namespace, joined
//! to the rig by a veth pair that the rig takes down and up through netlink.
//!
//! ```text
//!   the rig's namespace                               namespace posrig-<tag>
//!   acquirer host on 169.254.77.1 ─ prg<tag>h ═ veth ═ prg<tag>t ─ posterm on 169.254.77.2
//! ```
//!
//! [`NetnsLink::down`](crate::capability::Link::down) sets the rig-side end down, so the
//! terminal-side end loses its carrier exactly as if its cable were pulled: new connections fail,
//! open connections stop passing data and resume when the link comes back up.
//!
//! # Privilege
//!
//! Creating a namespace and a veth pair needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`: run the rig as
//! root (or in a user namespace that grants both). Without them, use the proxy link backend
//! ([`crate::sim::proxy`]), which needs no privilege.
//!
//! # Safe state after a crash: the next start restores the link
//!
//! A rig killed by SIGKILL runs no cleanup, so its namespace and veth pair stay behind, perhaps
//! with the link down. The next start restores the link: [`NetnsLink::create`] first removes
//! whatever a previous rig left under the same tag, then builds a fresh pair, so it always ends
//! with a clean link that is up. Tools that must not recreate anything call
//! [`NetnsLink::restore`], which only brings a left-over rig-side end back up.
//!
//! # Addresses
//!
//! Both ends get link-local addresses ([`NetnsAddresses`], by default 169.254.77.1/30 on the rig
//! side and 169.254.77.2/30 on the terminal side), so the simulated terminal never clashes with a
//! lab network. Several links living at once on one machine need distinct subnets.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, NetworkNamespace};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc as async_mpsc;

use crate::capability::Link;
use crate::error::{Result, RigError};
use crate::linux::netlink::{
    describe, find_link, get_link, is_errno, link_name, run_netlink_job, set_link_up,
};

/// The longest tag [`NetnsLink::create`] accepts: interface names are at most 15 characters
/// (IFNAMESIZ less the terminating NUL), and the tag sits between `prg` and a one-letter suffix.
pub const MAX_TAG_LEN: usize = 11;

/// How long [`NetnsLink::create`] waits for the namespace and the veth pair to be set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`NetnsLink::create`] waits for the kernel to let traffic through both new ends.
const PASSING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `down()`, `up()` and `is_up()` wait for the kernel's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dropping a [`NetnsLink`] waits for the namespace and the veth pair to be removed.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Capability bit numbers, from `linux/capability.h`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Serialises namespace creation inside this process: `NetworkNamespace::add` mounts
/// `/run/netns` the first time, and two racing first mounts would stack.
static NAMESPACE_CREATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The IPv4 addresses on the two ends of the veth pair. Both must be link-local (169.254.0.0/16)
/// and share one subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetnsAddresses {
    /// The rig-side end's address, in the rig's namespace: where the acquirer host listens for
    /// the terminal.
    pub rig: Ipv4Addr,
    /// The terminal-side end's address, inside the terminal's namespace: the terminal's own address.
    pub terminal: Ipv4Addr,
    /// The prefix length of both addresses (30 by default: a subnet holding just the two ends).
    pub prefix_len: u8,
}

impl Default for NetnsAddresses {
    fn default() -> NetnsAddresses {
        NetnsAddresses {
            rig: Ipv4Addr::new(169, 254, 77, 1),
            terminal: Ipv4Addr::new(169, 254, 77, 2),
            prefix_len: 30,
        }
    }
}

impl NetnsAddresses {
    /// Checks the addresses, returning what is wrong in a sentence a lab engineer can act on (the
    /// configuration loader adds the file and the line).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (end, address) in [("rig", self.rig), ("terminal", self.terminal)] {
            if !address.is_link_local() {
                return Err(format!(
                    "the {end}-side address {address} is not link-local; use an address in \
                     169.254.0.0/16 so the simulated terminal never clashes with a lab network"
                ));
            }
        }
        if !(16..=30).contains(&self.prefix_len) {
            return Err(format!(
                "the prefix length {} must be between 16 (all of 169.254.0.0/16) and 30 (just the \
                 two ends)",
                self.prefix_len
            ));
        }
        if self.rig == self.terminal {
            return Err(format!(
                "the rig side and the terminal side both have the address {}; give them two \
                 different addresses",
                self.rig
            ));
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        let (rig, terminal) = (u32::from(self.rig), u32::from(self.terminal));
        if rig & mask != terminal & mask {
            return Err(format!(
                "{} and {} are not in the same /{} subnet; pick two addresses of one subnet",
                self.rig, self.terminal, self.prefix_len
            ));
        }
        for (end, address) in [("rig", rig), ("terminal", terminal)] {
            let host = address & !mask;
            if host == 0 || host == !mask {
                return Err(format!(
                    "the {end}-side address {} is the network or broadcast address of its /{} \
                     subnet; pick a host address",
                    Ipv4Addr::from(address),
                    self.prefix_len
                ));
            }
        }
        Ok(())
    }
}

/// The names a tag gives to the namespace and the two ends of the veth pair.
#[derive(Debug, Clone)]
struct NetnsNames {
    namespace: String,
    rig_interface: String,
    terminal_interface: String,
}

impl NetnsNames {
    fn for_tag(tag: &str) -> std::result::Result<NetnsNames, String> {
        let allowed =
            |character: char| character.is_ascii_alphanumeric() || character == '-' || character == '_';
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || !tag.chars().all(allowed) {
            return Err(format!(
                "the tag {tag:?} must be 1 to {MAX_TAG_LEN} ASCII letters, digits, '-' or '_' (it \
                 names the interfaces prg<tag>h and prg<tag>t, at most 15 characters each)"
            ));
        }
        Ok(NetnsNames {
            namespace: format!("posrig-{tag}"),
            rig_interface: format!("prg{tag}h"),
            terminal_interface: format!("prg{tag}t"),
        })
    }

    fn namespace_path(&self) -> PathBuf {
        Path::new(rtnetlink::NETNS_PATH).join(&self.namespace)
    }

    /// How errors name this link.
    fn capability(&self) -> String {
        format!("link (netns {})", self.namespace)
    }
}

/// The simulated terminal's network link: the namespace `posrig-<tag>` joined to the rig's own
/// namespace by the veth pair `prg<tag>h` (rig side) and `prg<tag>t` (terminal side).
///
/// A worker thread keeps a netlink connection ready, so `down()`, `up()` and `is_up()` each cost
/// one netlink round trip and may be called from any thread, including from inside an async
/// runtime. Dropping the link deletes the veth pair and the namespace.
#[derive(Debug)]
pub struct NetnsLink {
    names: NetnsNames,
    addresses: NetnsAddresses,
    requests: async_mpsc::UnboundedSender<WorkerRequest>,
    worker: Option<JoinHandle<()>>,
}

impl NetnsLink {
    /// Creates the namespace `posrig-<tag>` and the veth pair joining it to the rig, with the
    /// default addresses (169.254.77.1/30 on the rig side, 169.254.77.2/30 on the terminal side),
    /// both ends and the namespace's loopback up.
    ///
    /// Whatever a previous rig left under the same tag (it was killed before it could clean up)
    /// is removed first, so this always ends with a clean link that is up: this is how the next
    /// start restores the link. Needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`; the error says so when
    /// they are missing. The tag is 1 to [`MAX_TAG_LEN`] ASCII letters, digits, `-` or `_`.
    pub fn create(tag: &str) -> Result<NetnsLink> {
        NetnsLink::create_with_addresses(tag, NetnsAddresses::default())
    }

    /// Like [`NetnsLink::create`], with the given addresses (checked by
    /// [`NetnsAddresses::validate`]).
    pub fn create_with_addresses(tag: &str, addresses: NetnsAddresses) -> Result<NetnsLink> {
        let names = NetnsNames::for_tag(tag)
            .map_err(|reason| RigError::actuator("link (netns)", "create", reason))?;
        let capability = names.capability();
        let failure = |reason: String| RigError::actuator(&capability, "create", reason);
        addresses.validate().map_err(failure)?;
        check_privileges().map_err(failure)?;

        let (requests, request_queue) = async_mpsc::unbounded_channel();
        let (setup_reporter, setup_outcome) = mpsc::sync_channel(1);
        let worker = thread::Builder::new()
            .name(format!("posrig-netns-{tag}"))
            .spawn({
                let names = names.clone();
                move || run_worker(names, addresses, setup_reporter, request_queue)
            })
            .map_err(|error| failure(format!("could not start the netlink worker thread: {error}")))?;
        match setup_outcome.recv_timeout(SETUP_TIMEOUT) {
            Ok(Ok(())) => Ok(NetnsLink {
                names,
                addresses,
                requests,
                worker: Some(worker),
            }),
            Ok(Err(reason)) => {
                // The worker has removed what it had made and is exiting.
                let _ = worker.join();
                Err(failure(reason))
            }
            // Dropping `requests` on return tells the worker to remove whatever it still makes.
            Err(mpsc::RecvTimeoutError::Timeout) => Err(failure(format!(
                "the namespace and the veth pair were not set up within {} s",
                SETUP_TIMEOUT.as_secs()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(failure(
                "the netlink worker thread stopped during setup".to_string(),
            )),
        }
    }

    /// Brings the rig-side end of a left-over veth pair of this tag back up (the safe state after
    /// a crash), without recreating or removing anything. Succeeds when nothing of that tag exists.
    pub fn restore(tag: &str) -> Result<()> {
        let names = NetnsNames::for_tag(tag)
            .map_err(|reason| RigError::actuator("link (netns)", "restore", reason))?;
        let capability = names.capability();
        let rig_interface = names.rig_interface;
        run_netlink_job(None, move |handle| async move {
            let link = find_link(&handle, &rig_interface)
                .await
                .map_err(|error| describe(&format!("looking up {rig_interface}"), &error))?;
            match link {
                None => Ok(()),
                Some(link) if link.header.flags.contains(LinkFlags::Up) => Ok(()),
                Some(link) => set_link_up(&handle, link.header.index, true)
                    .await
                    .map_err(|error| describe(&format!("setting {rig_interface} up"), &error)),
            }
        })
        .map_err(|reason| RigError::actuator(&capability, "restore", reason))
    }

    /// The namespace's name, `posrig-<tag>` (as `ip netns list` shows it).
    pub fn namespace_name(&self) -> &str {
        &self.names.namespace
    }

    /// The namespace's file, `/run/netns/posrig-<tag>`: the process supervisor opens it and calls
    /// `setns(fd, CLONE_NEWNET)` in `pre_exec` to start the terminal inside the namespace.
    pub fn namespace_path(&self) -> PathBuf {
        self.names.namespace_path()
    }

    /// The rig-side interface, `prg<tag>h`, in the rig's own namespace.
    pub fn rig_interface(&self) -> &str {
        &self.names.rig_interface
    }

    /// The terminal-side interface, `prg<tag>t`, inside the namespace.
    pub fn terminal_interface(&self) -> &str {
        &self.names.terminal_interface
    }

    /// The rig-side address: where the acquirer host listens for the terminal.
    pub fn rig_address(&self) -> Ipv4Addr {
        self.addresses.rig
    }

    /// The terminal-side address: the terminal's own address inside the namespace.
    pub fn terminal_address(&self) -> Ipv4Addr {
        self.addresses.terminal
    }

    /// Both addresses and their prefix length.
    pub fn addresses(&self) -> NetnsAddresses {
        self.addresses
    }

    /// Sends a command to the worker and waits for its answer.
    fn ask(&self, command: WorkerCommand, action: &str, timeout: Duration) -> Result<bool> {
        let failure = |reason: String| RigError::actuator(&self.names.capability(), action, reason);
        let stopped = || {
            failure(
                "the netlink worker of this link has stopped; recreate the link to restore it".to_string(),
            )
        };
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .send(WorkerRequest { command, reply })
            .map_err(|_| stopped())?;
        match answer.recv_timeout(timeout) {
            Ok(outcome) => outcome.map_err(failure),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(failure(format!(
                "netlink did not answer within {} s",
                timeout.as_secs()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }
}

impl Link for NetnsLink {
    /// Sets the rig-side end down: the terminal-side end loses its carrier.
    fn down(&self) -> Result<()> {
        self.ask(WorkerCommand::SetRigSide { up: false }, "down", REQUEST_TIMEOUT)
            .map(drop)
    }

    /// Sets the rig-side end up: the terminal-side end gets its carrier back. Returns as soon as
    /// the kernel has accepted the change; the kernel reactivates both ends' transmit paths
    /// moments later (normally well under a millisecond), and TCP retransmits anything sent
    /// meanwhile.
    fn up(&self) -> Result<()> {
        self.ask(WorkerCommand::SetRigSide { up: true }, "up", REQUEST_TIMEOUT)
            .map(drop)
    }

    /// Asks the kernel whether the rig-side end is administratively up.
    fn is_up(&self) -> Result<bool> {
        self.ask(WorkerCommand::ReadRigSide, "read state", REQUEST_TIMEOUT)
    }
}

impl Drop for NetnsLink {
    /// Deletes the veth pair (both ends) and the namespace. A terminal process still running
    /// inside keeps the namespace alive, unnamed, until it exits. Never panics: a failure is
    /// reported on stderr, and the next [`NetnsLink::create`] with the same tag cleans up.
    fn drop(&mut self) {
        let outcome = self.ask(WorkerCommand::TearDown, "remove", TEARDOWN_TIMEOUT);
        match outcome {
            Ok(_) => {
                if let Some(worker) = self.worker.take() {
                    let _ = worker.join();
                }
            }
            Err(error) => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "posrig: {error}; the next start with the same tag removes what is left (or run \
                     `ip link del {}` and `ip netns del {}`)",
                    self.names.rig_interface,
                    self.names.namespace
                );
            }
        }
    }
}

/// What the worker is asked to do.
#[derive(Debug)]
enum WorkerCommand {
    /// Set the rig-side end up or down; answers `up`.
    SetRigSide { up: bool },
    /// Read whether the rig-side end is up.
    ReadRigSide,
    /// Delete the veth pair and the namespace, then stop.
    TearDown,
}

/// A command and where to send its outcome.
#[derive(Debug)]
struct WorkerRequest {
    command: WorkerCommand,
    reply: mpsc::SyncSender<std::result::Result<bool, String>>,
}

/// What a link owns, to remove exactly that (and not a later rig's link of the same tag).
#[derive(Debug, Clone, Copy)]
struct OwnedResources {
    rig_index: u32,
    namespace_inode: u64,
}

/// The worker thread: owns a current-thread runtime and a netlink connection for the link's whole
/// life, sets the link up, serves requests, and removes everything when told to or when the
/// `NetnsLink` is gone.
fn run_worker(
    names: NetnsNames,
    addresses: NetnsAddresses,
    setup_reporter: mpsc::SyncSender<std::result::Result<(), String>>,
    mut request_queue: async_mpsc::UnboundedReceiver<WorkerRequest>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = setup_reporter.send(Err(format!("could not start a netlink runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let (connection, handle, _) = match rtnetlink::new_connection() {
            Ok(connection) => connection,
            Err(error) => {
                let _ = setup_reporter.send(Err(format!("could not open a netlink socket: {error}")));
                return;
            }
        };
        let connection_task = tokio::spawn(connection);
        let owned = match set_up(&handle, &names, addresses).await {
            Ok(owned) => owned,
            Err(reason) => {
                let _ = tear_down(&handle, &names, None).await;
                let _ = setup_reporter.send(Err(reason));
                connection_task.abort();
                return;
            }
        };
        if setup_reporter.send(Ok(())).is_err() {
            // `create` gave up waiting; nobody will ever use this link.
            let _ = tear_down(&handle, &names, Some(owned)).await;
            connection_task.abort();
            return;
        }
        let mut torn_down = false;
        while let Some(request) = request_queue.recv().await {
            let outcome = match request.command {
                WorkerCommand::SetRigSide { up } => set_link_up(&handle, owned.rig_index, up)
                    .await
                    .map(|()| up)
                    .map_err(|error| rig_side_failure(&names, &error)),
                WorkerCommand::ReadRigSide => get_link(&handle, owned.rig_index)
                    .await
                    .map(|link| link.header.flags.contains(LinkFlags::Up))
                    .map_err(|error| rig_side_failure(&names, &error)),
                WorkerCommand::TearDown => {
                    torn_down = true;
                    tear_down(&handle, &names, Some(owned)).await.map(|()| false)
                }
            };
            let _ = request.reply.send(outcome);
            if torn_down {
                break;
            }
        }
        if !torn_down {
            let _ = tear_down(&handle, &names, Some(owned)).await;
        }
        connection_task.abort();
    });
}

/// Removes left-overs, creates the namespace and the veth pair, addresses both ends and brings
/// them up.
async fn set_up(
    handle: &Handle,
    names: &NetnsNames,
    addresses: NetnsAddresses,
) -> std::result::Result<OwnedResources, String> {
    tear_down(handle, names, None)
        .await
        .map_err(|reason| format!("could not remove what a previous rig left behind: {reason}"))?;

    {
        let _creating = NAMESPACE_CREATION.lock().await;
        NetworkNamespace::add(&names.namespace)
            .await
            .map_err(|error| describe(&format!("creating the namespace {}", names.namespace), &error))?;
    }
    let namespace_path = names.namespace_path();
    let namespace = File::open(&namespace_path)
        .map_err(|error| format!("opening {}: {error}", namespace_path.display()))?;
    let namespace_inode = namespace
        .metadata()
        .map_err(|error| format!("reading {}: {error}", namespace_path.display()))?
        .ino();

    // The terminal-side end is created directly inside the namespace, so it never shows up in
    // the rig's namespace, not even for a moment.
    let terminal_end = LinkUnspec::new_with_name(&names.terminal_interface)
        .setns_by_fd(namespace.as_raw_fd())
        .build();
    let veth = LinkVeth::new(&names.rig_interface, &names.terminal_interface)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(terminal_end)))
        .build();
    handle.link().add(veth).execute().await.map_err(|error| {
        describe(
            &format!(
                "creating the veth pair {} / {}",
                names.rig_interface, names.terminal_interface
            ),
            &error,
        )
    })?;
    drop(namespace);

    let rig_index = find_link(handle, &names.rig_interface)
        .await
        .map_err(|error| describe(&format!("looking up {}", names.rig_interface), &error))?
        .ok_or_else(|| format!("{} vanished right after it was created", names.rig_interface))?
        .header
        .index;
    handle
        .address()
        .add(rig_index, IpAddr::V4(addresses.rig), addresses.prefix_len)
        .execute()
        .await
        .map_err(|error| {
            describe(
                &format!(
                    "adding {}/{} to {}",
                    addresses.rig, addresses.prefix_len, names.rig_interface
                ),
                &error,
            )
        })?;
    set_link_up(handle, rig_index, true)
        .await
        .map_err(|error| describe(&format!("setting {} up", names.rig_interface), &error))?;

    let terminal_interface = names.terminal_interface.clone();
    run_netlink_job(Some(namespace_path), move |handle| {
        configure_terminal_side(handle, terminal_interface, addresses)
    })?;
    wait_until_passing(handle, rig_index, &names.rig_interface).await?;

    Ok(OwnedResources {
        rig_index,
        namespace_inode,
    })
}

/// Inside the namespace: brings `lo` up, addresses the terminal-side end and brings it up.
async fn configure_terminal_side(
    handle: Handle,
    terminal_interface: String,
    addresses: NetnsAddresses,
) -> std::result::Result<(), String> {
    for interface in ["lo", terminal_interface.as_str()] {
        let index = find_link(&handle, interface)
            .await
            .map_err(|error| describe(&format!("looking up {interface} in the namespace"), &error))?
            .ok_or_else(|| format!("the namespace has no interface {interface}"))?
            .header
            .index;
        if interface == terminal_interface {
            handle
                .address()
                .add(index, IpAddr::V4(addresses.terminal), addresses.prefix_len)
                .execute()
                .await
                .map_err(|error| {
                    describe(
                        &format!(
                            "adding {}/{} to {interface}",
                            addresses.terminal, addresses.prefix_len
                        ),
                        &error,
                    )
                })?;
        }
        set_link_up(&handle, index, true)
            .await
            .map_err(|error| describe(&format!("setting {interface} up in the namespace"), &error))?;
        if interface == terminal_interface {
            wait_until_passing(&handle, index, interface).await?;
        }
    }
    Ok(())
}

/// Waits until the kernel lets traffic through an interface: it is operationally up and its
/// queueing discipline is no longer `noop`, which drops every packet. The kernel activates an
/// interface moments after its carrier comes on (later while other namespaces are being torn
/// down); until then a terminal's first SYN would be lost and its connect would stall for 1 s.
async fn wait_until_passing(handle: &Handle, index: u32, name: &str) -> std::result::Result<(), String> {
    let deadline = tokio::time::Instant::now() + PASSING_TIMEOUT;
    loop {
        let link = get_link(handle, index)
            .await
            .map_err(|error| describe(&format!("reading the state of {name}"), &error))?;
        if is_passing_traffic(&link) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{name} did not start passing traffic within {} s of being set up",
                PASSING_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when the link is operationally up and its transmit path is active.
fn is_passing_traffic(link: &LinkMessage) -> bool {
    let mut operational = false;
    let mut transmitting = true;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::OperState(state) => operational = *state == State::Up,
            LinkAttribute::Qdisc(qdisc) => transmitting = qdisc != "noop",
            _ => {}
        }
    }
    operational && transmitting
}

/// Deletes the veth pair and the namespace. With `owned`, only what this link created (matched by
/// interface index and name, and by namespace inode); without, whatever carries the tag's names.
/// Missing pieces are not an error.
async fn tear_down(
    handle: &Handle,
    names: &NetnsNames,
    owned: Option<OwnedResources>,
) -> std::result::Result<(), String> {
    let mut problems = Vec::new();

    let mut doomed_interfaces = Vec::new();
    match owned {
        Some(owned) => match get_link(handle, owned.rig_index).await {
            Ok(link) if link_name(&link) == Some(names.rig_interface.as_str()) => {
                doomed_interfaces.push(owned.rig_index)
            }
            Ok(_) => {}
            Err(error) if is_errno(&error, libc::ENODEV) => {}
            Err(error) => problems.push(describe(&format!("looking up {}", names.rig_interface), &error)),
        },
        None => {
            // Deleting one end of a veth pair deletes the other; the terminal-side name is looked
            // up too in case a half-built pair left it in the rig's namespace.
            for interface in [&names.rig_interface, &names.terminal_interface] {
                match find_link(handle, interface).await {
                    Ok(Some(link)) => doomed_interfaces.push(link.header.index),
                    Ok(None) => {}
                    Err(error) => problems.push(describe(&format!("looking up {interface}"), &error)),
                }
            }
        }
    }
    for index in doomed_interfaces {
        match handle.link().del(index).execute().await {
            Ok(()) => {}
            Err(error) if is_errno(&error, libc::ENODEV) => {}
            Err(error) => problems.push(describe(
                &format!("deleting the veth pair {}", names.rig_interface),
                &error,
            )),
        }
    }

    if let Err(problem) = remove_namespace(names, owned.map(|owned| owned.namespace_inode)).await {
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Unmounts and removes the namespace's file (only if it is still the namespace with
/// `expected_inode`, when given). The namespace itself goes away once no process is inside.
async fn remove_namespace(
    names: &NetnsNames,
    expected_inode: Option<u64>,
) -> std::result::Result<(), String> {
    let path = names.namespace_path();
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(format!("reading {}: {error}", path.display())),
    };
    if expected_inode.is_some_and(|inode| inode != metadata.ino()) {
        // A later rig has replaced the namespace: it is not ours to remove.
        return Ok(());
    }
    let deleted = NetworkNamespace::del(&names.namespace).await;
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    // A file that is not a mount (a namespace creation cut short) only needs unlinking.
    std::fs::remove_file(&path).map_err(|error| {
        let cause = match deleted {
            Err(namespace_error) => namespace_error.to_string(),
            Ok(()) => error.to_string(),
        };
        format!("removing the namespace {}: {cause}", names.namespace)
    })
}

/// The failure of a request on the rig-side end, naming the usual cause when it is gone.
fn rig_side_failure(names: &NetnsNames, error: &rtnetlink::Error) -> String {
    if is_errno(error, libc::ENODEV) {
        format!(
            "the rig-side interface {} is gone (deleted outside the rig, or replaced by another rig \
             with the same tag); recreate the link",
            names.rig_interface
        )
    } else {
        describe(&format!("netlink request on {}", names.rig_interface), error)
    }
}

/// Checks up front that this process may create namespaces and interfaces, so a missing
/// privilege is reported in one clear sentence rather than as a kernel error halfway through.
fn check_privileges() -> std::result::Result<(), String> {
    // Capabilities belong to threads, and the worker thread inherits this thread's. When they
    // cannot be read, the kernel's own answers will tell.
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
    else {
        return Ok(());
    };
    let Some(effective) = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|bits| u64::from_str_radix(bits.trim(), 16).ok())
    else {
        return Ok(());
    };
    let missing: Vec<&str> = [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| effective & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "a network-namespace link needs CAP_NET_ADMIN and CAP_SYS_ADMIN, and this process lacks {}; \
         run the rig as root (or in a user namespace that grants both), or choose the proxy link \
         backend, which works without any privilege",
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_addresses_are_valid_and_link_local() {
        let addresses = NetnsAddresses::default();
        assert_eq!(addresses.validate(), Ok(()));
        assert!(addresses.rig.is_link_local() && addresses.terminal.is_link_local());
    }

    #[test]
    fn private_network_addresses_are_refused() {
        let addresses = NetnsAddresses {
            rig: Ipv4Addr::new(10, 0, 0, 1),
            terminal: Ipv4Addr::new(10, 0, 0, 2),
            prefix_len: 30,
        };
        let problem = addresses.validate().err().unwrap_or_default();
        assert!(problem.contains("not link-local"), "{problem}");
    }

    #[test]
    fn addresses_outside_one_subnet_or_on_its_edges_are_refused() {
        let apart = NetnsAddresses {
            terminal: Ipv4Addr::new(169, 254, 78, 2),
            ..NetnsAddresses::default()
        };
        assert!(apart.validate().is_err());
        let broadcast = NetnsAddresses {
            terminal: Ipv4Addr::new(169, 254, 77, 3),
            ..NetnsAddresses::default()
        };
        assert!(broadcast.validate().is_err());
        let too_narrow = NetnsAddresses {
            prefix_len: 31,
            ..NetnsAddresses::default()
        };
        assert!(too_narrow.validate().is_err());
    }

    #[test]
    fn tags_name_interfaces_within_ifnamsiz() {
        let names = NetnsNames::for_tag("abcdefghijk").expect("an 11-character tag is accepted");
        assert_eq!(names.rig_interface, "prgabcdefghijkh");
        assert_eq!(names.rig_interface.len(), 15);
        assert_eq!(names.namespace, "posrig-abcdefghijk");
        assert!(NetnsNames::for_tag("abcdefghijkl").is_err());
        assert!(NetnsNames::for_tag("").is_err());
        assert!(NetnsNames::for_tag("a/b").is_err());
    }
}
