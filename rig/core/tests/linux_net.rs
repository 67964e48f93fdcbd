//! The generic Linux network backends against the real kernel: a veth pair joins the test's
//! namespace to a terminal namespace (made by `NetnsLink`), and the backends act on the
//! terminal-side interface inside that namespace, so the machine's own interfaces and nftables
//! are never touched. A TCP or UDP server listens on the rig side; the "terminal" is a socket
//! opened inside the namespace.
//!
//! Network namespaces and nftables need root: run as another user, each test says it is skipped
//! and passes. Each test uses its own tag, rig name and link-local subnet, so they run in parallel.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use posrig_core::capability::{Impairment, Link, NetworkImpairment};
use posrig_core::linux::netlink_link::{NetlinkLink, NetlinkLinkConfig};
use posrig_core::linux::nftables::{NftablesConfig, NftablesImpairment};
use posrig_core::sim::netns::NetnsLink;

/// The environment variable that turns the test binary into the child holding a blackhole.
const CHILD_ENV: &str = "POSRIG_LINUXNET_CHILD";
/// What the child prints once its blackhole is in force.
const CHILD_READY: &str = "posrig-child: blackhole applied";

mod common;

use common::{
    assert_stalled, connect_from_terminal, connect_from_terminal_soon, inside_namespace, listen_on_rig_side,
};

/// A terminal namespace joined to the test's namespace, with link-local /30 number `subnet`
/// (apart from the 169.254.77.0/24 the netns tests use).
fn terminal_namespace(tag: &str, subnet: u8) -> NetnsLink {
    NetnsLink::create_with_addresses(tag, common::addresses(91, subnet))
        .expect("the terminal namespace is created")
}

/// Sends `count` numbered datagrams from the terminal to a fresh server on the rig side, paced so
/// no buffer overflows, and returns how many arrived.
fn udp_delivered(link: &NetnsLink, count: usize) -> usize {
    let server = UdpSocket::bind(SocketAddrV4::new(link.rig_address(), 0)).expect("binds the rig side");
    let server_address = server.local_addr().expect("the server has an address");
    server
        .set_read_timeout(Some(Duration::from_millis(600)))
        .expect("timeout set");
    let receiver = std::thread::spawn(move || {
        let mut received = 0;
        let mut buffer = [0u8; 16];
        while server.recv(&mut buffer).is_ok() {
            received += 1;
        }
        received
    });
    inside_namespace(link.namespace_path(), move || {
        let client = UdpSocket::bind("0.0.0.0:0").expect("binds inside the namespace");
        for number in 0..count {
            // A dropped datagram is an error on the sending host (EPERM from the output hook).
            let _ = client.send_to(&(number as u32).to_be_bytes(), server_address);
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    receiver.join().expect("the receiver finishes")
}

/// `nft list tables` inside the namespace.
fn tables_in(link: &NetnsLink) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", link.namespace_name(), "nft", "list", "tables"])
        .output()
        .expect("ip netns exec runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn nftables_config(link: &NetnsLink) -> NftablesConfig {
    NftablesConfig {
        interface: link.terminal_interface().to_string(),
        namespace: Some(link.namespace_name().to_string()),
    }
}

fn netlink_config(link: &NetnsLink) -> NetlinkLinkConfig {
    NetlinkLinkConfig {
        interface: link.terminal_interface().to_string(),
        namespace: Some(link.namespace_name().to_string()),
    }
}

/// Whether the kernel has `interface` in the namespace administratively up, per `ip link`.
fn admin_up_in(link: &NetnsLink, interface: &str) -> bool {
    let output = Command::new("ip")
        .args([
            "-n",
            link.namespace_name(),
            "-o",
            "link",
            "show",
            "dev",
            interface,
        ])
        .output()
        .expect("ip link runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    let flags = shown
        .split('<')
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or("");
    flags.split(',').any(|flag| flag == "UP")
}

fn blackhole() -> Impairment {
    Impairment {
        blackhole: true,
        ..Impairment::default()
    }
}

#[test]
fn a_netlink_flap_on_a_named_interface_stops_and_restores_tcp() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnflap", 0);
    let link = NetlinkLink::open(&netlink_config(&namespace)).expect("the link opens");
    assert_eq!(link.interface(), namespace.terminal_interface());
    assert!(link.is_up().expect("the state is read"));
    let (listener, server) = listen_on_rig_side(&namespace);
    let mut client = connect_from_terminal(&namespace, server).expect("reachable while up");
    let (mut accepted, _) = listener.accept().expect("the server accepts");

    link.down().expect("the link goes down");
    assert!(!link.is_up().expect("the state is read"));
    assert!(
        !admin_up_in(&namespace, namespace.terminal_interface()),
        "the kernel has it down"
    );
    assert!(
        connect_from_terminal(&namespace, server).is_err(),
        "no new connection while the link is down"
    );
    client
        .write_all(b"during")
        .expect("the terminal's send is queued");
    assert_stalled(&mut accepted);

    link.up().expect("the link comes up");
    assert!(link.is_up().expect("the state is read"));
    accepted
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout set");
    let mut received = [0u8; 6];
    accepted
        .read_exact(&mut received)
        .expect("the queued data arrives once the link is up");
    assert_eq!(&received, b"during");
    connect_from_terminal_soon(&namespace, server);
}

#[test]
fn opening_brings_a_downed_interface_up_and_dropping_leaves_it_up() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnsafe", 1);
    let interface = namespace.terminal_interface().to_string();
    let first = NetlinkLink::open(&netlink_config(&namespace)).expect("the link opens");
    first.down().expect("the link goes down");
    // A rig killed by SIGKILL runs no destructor: the interface stays down.
    std::mem::forget(first);
    assert!(!admin_up_in(&namespace, &interface));

    let second = NetlinkLink::open(&netlink_config(&namespace)).expect("the link opens again");
    assert!(admin_up_in(&namespace, &interface), "opening restores the link");
    second.down().expect("the link goes down");
    drop(second);
    assert!(admin_up_in(&namespace, &interface), "dropping restores the link");
}

#[test]
fn a_missing_interface_is_named_with_the_interfaces_that_exist() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnmiss", 2);
    let config = NetlinkLinkConfig {
        interface: "eth9".to_string(),
        namespace: Some(namespace.namespace_name().to_string()),
    };
    let message = NetlinkLink::open(&config)
        .expect_err("eth9 does not exist")
        .to_string();
    assert!(message.contains("\"eth9\""), "{message}");
    assert!(message.contains("/run/netns/posrig-lnmiss"), "{message}");
    assert!(
        message.contains(&format!(
            "the interfaces there are: lo, {}",
            namespace.terminal_interface()
        )),
        "{message}"
    );
}

#[test]
fn a_missing_interface_in_the_rigs_namespace_is_reported_without_privilege() {
    let config = NetlinkLinkConfig {
        interface: "posrignone0".to_string(),
        namespace: None,
    };
    let message = NetlinkLink::open(&config)
        .expect_err("no such interface")
        .to_string();
    assert!(message.contains("\"posrignone0\""), "{message}");
    assert!(message.contains("the rig's network namespace"), "{message}");
    assert!(message.contains("lo"), "{message}");
}

#[test]
fn blackhole_and_certain_loss_stop_traffic_and_clear_restores_it() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnblk", 3);
    let impairment = NftablesImpairment::new("ln-blk", &nftables_config(&namespace)).expect("starts");
    assert_eq!(impairment.table(), "posrig_ln-blk");
    assert!(
        !tables_in(&namespace).contains("posrig_ln-blk"),
        "nothing in force, no table"
    );
    let (listener, server) = listen_on_rig_side(&namespace);
    let mut client = connect_from_terminal(&namespace, server).expect("reachable");
    let (mut accepted, _) = listener.accept().expect("the server accepts");
    assert_eq!(udp_delivered(&namespace, 20), 20);

    impairment.apply(&blackhole()).expect("the blackhole is applied");
    assert!(tables_in(&namespace).contains("table inet posrig_ln-blk"));
    assert_eq!(udp_delivered(&namespace, 20), 0, "a blackhole passes no datagram");
    assert!(
        connect_from_terminal(&namespace, server).is_err(),
        "a blackhole passes no SYN"
    );
    client
        .write_all(b"held")
        .expect("the send is queued: the connection stays open");
    accepted
        .set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout set");
    let mut received = [0u8; 4];
    assert!(
        accepted.read(&mut received).is_err(),
        "no data passes a blackhole"
    );

    impairment.clear().expect("cleared");
    assert!(
        !tables_in(&namespace).contains("posrig_ln-blk"),
        "clear removes the rules"
    );
    accepted
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout set");
    accepted
        .read_exact(&mut received)
        .expect("the held data arrives after clear");
    assert_eq!(&received, b"held");
    assert_eq!(udp_delivered(&namespace, 20), 20);

    impairment
        .apply(&Impairment {
            drop: 1.0,
            ..Impairment::default()
        })
        .expect("certain loss is applied");
    assert_eq!(udp_delivered(&namespace, 20), 0, "loss 1.0 passes no datagram");
    assert!(
        connect_from_terminal(&namespace, server).is_err(),
        "loss 1.0 passes no SYN"
    );

    drop(impairment);
    assert!(
        !tables_in(&namespace).contains("posrig_ln-blk"),
        "drop removes the table"
    );
    assert_eq!(udp_delivered(&namespace, 20), 20);
    connect_from_terminal_soon(&namespace, server);
}

#[test]
fn half_loss_drops_some_datagrams_but_not_all() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnhalf", 4);
    let impairment = NftablesImpairment::new("ln-half", &nftables_config(&namespace)).expect("starts");
    impairment
        .apply(&Impairment {
            drop: 0.5,
            ..Impairment::default()
        })
        .expect("half loss is applied");
    // Binomial(400, 0.5): mean 200, standard deviation 10; 100 and 300 lie 10 deviations away.
    let delivered = udp_delivered(&namespace, 400);
    assert!(
        (100..=300).contains(&delivered),
        "{delivered} of 400 datagrams arrived"
    );
    impairment.clear().expect("cleared");
    assert_eq!(udp_delivered(&namespace, 50), 50, "clear restores every datagram");
}

#[test]
fn delay_and_impossible_loss_are_refused_and_change_nothing() {
    skip_unless_root!();
    let namespace = terminal_namespace("lndelay", 5);
    let impairment = NftablesImpairment::new("ln-delay", &nftables_config(&namespace)).expect("starts");
    impairment.apply(&blackhole()).expect("the blackhole is applied");
    let delayed = impairment
        .apply(&Impairment {
            delay: Duration::from_millis(200),
            ..Impairment::default()
        })
        .expect_err("nftables cannot delay");
    assert!(
        delayed.to_string().contains(
            "delay needs the proxy impairment (nftables cannot delay packets; no tc netem on this kernel)"
        ),
        "{delayed}"
    );
    let impossible = impairment
        .apply(&Impairment {
            drop: 1.5,
            ..Impairment::default()
        })
        .expect_err("a probability above 1 is refused");
    assert!(
        impossible.to_string().contains("not between 0 and 1"),
        "{impossible}"
    );
    assert_eq!(
        udp_delivered(&namespace, 10),
        0,
        "the blackhole is still in force"
    );
}

#[test]
fn reset_connections_resets_open_connections_and_spares_new_ones() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnreset", 6);
    let impairment = NftablesImpairment::new("ln-reset", &nftables_config(&namespace)).expect("starts");
    let (listener, server) = listen_on_rig_side(&namespace);
    let mut client = connect_from_terminal(&namespace, server).expect("reachable");
    let (mut accepted, _) = listener.accept().expect("the server accepts");
    let mut received = [0u8; 4];
    client.write_all(b"0200").expect("sent");
    accepted
        .read_exact(&mut received)
        .expect("received before the reset");

    impairment.reset_connections().expect("the reset is in force");
    // The host speaks first: the terminal side answers its packet with a RST.
    accepted.write_all(b"0210").expect("the host's send is queued");
    accepted
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout set");
    let host_side = accepted
        .read(&mut received)
        .expect_err("the host's connection is reset");
    assert_eq!(host_side.kind(), ErrorKind::ConnectionReset, "{host_side}");
    // The terminal never saw that packet; its own next packet is answered with a RST.
    client.write_all(b"0400").expect("the terminal's send is queued");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout set");
    let terminal_side = client
        .read(&mut received)
        .expect_err("the terminal's connection is reset");
    assert_eq!(
        terminal_side.kind(),
        ErrorKind::ConnectionReset,
        "{terminal_side}"
    );

    let mut fresh = connect_from_terminal(&namespace, server).expect("a new connection is allowed");
    let (mut fresh_accepted, _) = listener.accept().expect("the server accepts");
    fresh.write_all(b"0200").expect("sent");
    fresh_accepted
        .read_exact(&mut received)
        .expect("the new connection carries data");
    fresh_accepted.write_all(b"0210").expect("answered");
    fresh
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout set");
    fresh.read_exact(&mut received).expect("the answer arrives");
    assert_eq!(&received, b"0210");
}

/// Not a test of its own: the child process of
/// `a_table_left_by_a_killed_rig_is_removed_by_the_next_one`, which re-runs this binary with
/// [`CHILD_ENV`] set to "namespace interface rig" so this applies a blackhole and waits to be killed.
#[test]
fn child_holding_a_blackhole_until_killed() {
    let Ok(arguments) = std::env::var(CHILD_ENV) else {
        eprintln!("skipped: only runs as the child process of the SIGKILL test");
        return;
    };
    let mut parts = arguments.split(' ');
    let (Some(namespace), Some(interface), Some(rig)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{CHILD_ENV} must hold \"namespace interface rig\", not {arguments:?}");
    };
    let config = NftablesConfig {
        interface: interface.to_string(),
        namespace: Some(namespace.to_string()),
    };
    let impairment = NftablesImpairment::new(rig, &config).expect("the child's impairment starts");
    impairment
        .apply(&blackhole())
        .expect("the child applies a blackhole");
    println!("{CHILD_READY}");
    std::io::stdout().flush().expect("stdout flushes");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_table_left_by_a_killed_rig_is_removed_by_the_next_one() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnkill", 7);
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["child_holding_a_blackhole_until_killed", "--exact", "--nocapture"])
        .env(
            CHILD_ENV,
            format!(
                "{} {} ln-kill",
                namespace.namespace_name(),
                namespace.terminal_interface()
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(std::result::Result::ok)
        .any(|line| line == CHILD_READY);
    assert!(ready, "the child applied its blackhole");
    assert!(tables_in(&namespace).contains("table inet posrig_ln-kill"));

    child.kill().expect("the child is killed with SIGKILL");
    child.wait().expect("the child is reaped");
    assert!(
        tables_in(&namespace).contains("table inet posrig_ln-kill"),
        "SIGKILL leaves the table behind"
    );
    assert_eq!(
        udp_delivered(&namespace, 10),
        0,
        "the left-over blackhole is in force"
    );

    let successor = NftablesImpairment::new("ln-kill", &nftables_config(&namespace)).expect("starts");
    assert!(
        !tables_in(&namespace).contains("posrig_ln-kill"),
        "the successor removed the left-over table"
    );
    assert_eq!(udp_delivered(&namespace, 10), 10);
    drop(successor);
}

#[test]
fn bad_rig_names_and_interface_names_are_refused_before_nft_runs() {
    let config = NftablesConfig {
        interface: "eth1".to_string(),
        namespace: None,
    };
    let bad_rig = NftablesImpairment::new("rig; flush ruleset", &config).expect_err("refused");
    assert!(bad_rig.to_string().contains("posrig_<rig>"), "{bad_rig}");
    let bad_interface = NftablesImpairment::new(
        "rig",
        &NftablesConfig {
            interface: "eth1\" accept".to_string(),
            namespace: None,
        },
    )
    .expect_err("refused");
    assert!(
        bad_interface.to_string().contains("not a Linux interface name"),
        "{bad_interface}"
    );
}

/// Runs `job` on a thread that has dropped root (the raw system call, unlike libc's setresuid,
/// leaves the other threads alone); processes and threads it starts inherit nobody's credentials.
fn as_nobody<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // SAFETY: plain system call on integers; this thread ends right after the job.
            let changed = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(changed, 0, "this thread drops root");
        }
        job()
    })
    .join()
    .expect("the unprivileged thread finishes")
}

#[test]
fn without_privilege_both_backends_say_to_run_as_root() {
    let link_refusal = as_nobody(|| {
        let config = NetlinkLinkConfig {
            interface: "lo".to_string(),
            namespace: None,
        };
        NetlinkLink::open(&config).expect_err("setting an interface up needs CAP_NET_ADMIN")
    });
    let message = link_refusal.to_string();
    assert!(
        message.contains("setting lo up") && message.contains("run the rig as root"),
        "{message}"
    );

    let nft_refusal = as_nobody(|| {
        let config = NftablesConfig {
            interface: "eth1".to_string(),
            namespace: None,
        };
        NftablesImpairment::new("ln-nopriv", &config).expect_err("nftables needs CAP_NET_ADMIN")
    });
    let message = nft_refusal.to_string();
    assert!(
        message.contains("nft refused") && message.contains("run the rig as root"),
        "{message}"
    );
}

/// Runs `ip -n <namespace> <arguments>` and checks it succeeded.
fn ip_in(link: &NetnsLink, arguments: &[&str]) {
    let output = Command::new("ip")
        .args(["-n", link.namespace_name()])
        .args(arguments)
        .output()
        .expect("ip runs");
    assert!(
        output.status.success(),
        "ip {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_replugged_interface_is_found_again_and_an_unplugged_one_is_named() {
    skip_unless_root!();
    let namespace = terminal_namespace("lnplug", 8);
    ip_in(
        &namespace,
        &[
            "link", "add", "usbeth0", "type", "veth", "peer", "name", "usbeth0p",
        ],
    );
    let config = NetlinkLinkConfig {
        interface: "usbeth0".to_string(),
        namespace: Some(namespace.namespace_name().to_string()),
    };
    let link = NetlinkLink::open(&config).expect("the link opens");
    assert!(admin_up_in(&namespace, "usbeth0"));

    // Unplugged and plugged back in: the same name under a new index, down.
    ip_in(&namespace, &["link", "del", "usbeth0"]);
    ip_in(
        &namespace,
        &[
            "link", "add", "usbeth0", "type", "veth", "peer", "name", "usbeth0p",
        ],
    );
    assert!(!link.is_up().expect("the new interface's state is read"));
    link.up().expect("the new interface comes up");
    assert!(admin_up_in(&namespace, "usbeth0"));
    link.down().expect("the new interface goes down");
    assert!(!admin_up_in(&namespace, "usbeth0"));

    ip_in(&namespace, &["link", "del", "usbeth0"]);
    let message = link.up().expect_err("the adapter is unplugged").to_string();
    assert!(message.contains("link (netlink usbeth0): up failed"), "{message}");
    assert!(message.contains("no interface \"usbeth0\""), "{message}");
    assert!(message.contains(namespace.terminal_interface()), "{message}");
}
