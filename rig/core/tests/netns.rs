//! The network-namespace link against the real kernel: a TCP server in the rig's namespace, a
//! client inside the terminal's namespace, and the link taken down and up between them.
//!
//! Network namespaces need root: run as another user, each test says it is skipped and passes.
//! Each test uses its own tag and its own link-local subnet, so they run in parallel.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use posrig_core::capability::Link;
use posrig_core::sim::netns::{NetnsAddresses, NetnsLink};

mod common;

use common::{
    assert_stalled, connect_from_terminal, connect_from_terminal_soon, inside_namespace, listen_on_rig_side,
    CONNECT_TIMEOUT,
};

/// The link-local /30 numbered `subnet` of 169.254.77.0/24.
fn addresses(subnet: u8) -> NetnsAddresses {
    common::addresses(77, subnet)
}

/// The rig-side interface's IFF_UP flag, as sysfs shows it; `None` when the interface is gone.
fn interface_is_up(interface: &str) -> Option<bool> {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{interface}/flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & 1 == 1)
}

fn interface_exists(interface: &str) -> bool {
    Path::new("/sys/class/net").join(interface).exists()
}

#[test]
fn terminal_reaches_a_server_on_the_rig_side() {
    skip_unless_root!();
    let link = NetnsLink::create("tconn").expect("the link is created");
    assert_eq!(link.namespace_name(), "posrig-tconn");
    assert_eq!(link.namespace_path(), PathBuf::from("/run/netns/posrig-tconn"));
    assert_eq!(link.rig_interface(), "prgtconnh");
    assert_eq!(link.terminal_interface(), "prgtconnt");
    assert_eq!(link.rig_address(), Ipv4Addr::new(169, 254, 77, 1));
    assert_eq!(link.terminal_address(), Ipv4Addr::new(169, 254, 77, 2));
    assert!(link.is_up().expect("the state is read"));
    assert!(
        !interface_exists(link.terminal_interface()),
        "the terminal side lives in the namespace"
    );

    let (listener, server) = listen_on_rig_side(&link);
    let mut client = connect_from_terminal(&link, server).expect("the terminal reaches the rig side");
    let (mut accepted, peer) = listener.accept().expect("the server accepts");
    assert_eq!(peer.ip(), link.terminal_address());
    client.write_all(b"0800").expect("the terminal sends");
    let mut received = [0u8; 4];
    accepted.read_exact(&mut received).expect("the server receives");
    assert_eq!(&received, b"0800");
}

#[test]
fn down_makes_the_rig_side_unreachable_and_up_restores_it() {
    skip_unless_root!();
    let link = NetnsLink::create_with_addresses("tflap", addresses(1)).expect("the link is created");
    let (_listener, server) = listen_on_rig_side(&link);
    connect_from_terminal(&link, server).expect("reachable while up");

    link.down().expect("the link goes down");
    assert!(!link.is_up().expect("the state is read"));
    assert_eq!(
        interface_is_up(link.rig_interface()),
        Some(false),
        "the kernel has the rig side down"
    );
    let started = Instant::now();
    let attempt = connect_from_terminal(&link, server);
    assert!(
        attempt.is_err(),
        "the terminal must not reach the rig side while the link is down"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the connection attempt gave up in time"
    );

    link.up().expect("the link comes up");
    assert!(link.is_up().expect("the state is read"));
    assert_eq!(interface_is_up(link.rig_interface()), Some(true));
    connect_from_terminal_soon(&link, server);
}

#[test]
fn an_open_connection_stalls_while_down_and_resumes_after_up() {
    skip_unless_root!();
    let link = NetnsLink::create_with_addresses("testab", addresses(2)).expect("the link is created");
    let (listener, server) = listen_on_rig_side(&link);
    let mut client = connect_from_terminal(&link, server).expect("reachable while up");
    let (mut accepted, _) = listener.accept().expect("the server accepts");
    let mut received = [0u8; 6];
    client.write_all(b"before").expect("the terminal sends");
    accepted
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout set");
    accepted.read_exact(&mut received).expect("data passes while up");
    assert_eq!(&received, b"before");

    link.down().expect("the link goes down");
    client
        .write_all(b"during")
        .expect("the terminal's send is queued");
    assert_stalled(&mut accepted);

    link.up().expect("the link comes up");
    accepted
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout set");
    accepted
        .read_exact(&mut received)
        .expect("the queued data arrives once the link is up");
    assert_eq!(&received, b"during");
    accepted.write_all(b"after!").expect("the server answers");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout set");
    client
        .read_exact(&mut received)
        .expect("the answer reaches the terminal");
    assert_eq!(&received, b"after!");
}

#[test]
fn create_over_a_left_over_link_ends_up_and_restore_brings_a_left_over_up() {
    skip_unless_root!();
    let tag = "tleft";
    let first = NetnsLink::create_with_addresses(tag, addresses(3)).expect("the link is created");
    let rig_interface = first.rig_interface().to_string();
    first.down().expect("the link goes down");
    // A rig killed by SIGKILL runs no destructor: its namespace and its downed veth stay behind.
    std::mem::forget(first);
    assert_eq!(interface_is_up(&rig_interface), Some(false));

    let second = NetnsLink::create_with_addresses(tag, addresses(3)).expect("created over the left-over");
    assert!(second.is_up().expect("the state is read"));
    let (_listener, server) = listen_on_rig_side(&second);
    connect_from_terminal(&second, server).expect("reachable after the left-over was replaced");
    let namespace = second.namespace_path();
    second.down().expect("the link goes down");
    std::mem::forget(second);

    NetnsLink::restore(tag).expect("the left-over is restored");
    assert_eq!(
        interface_is_up(&rig_interface),
        Some(true),
        "restore brings the rig side up"
    );
    let reached = inside_namespace(namespace.clone(), move || {
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            match TcpStream::connect_timeout(&server, CONNECT_TIMEOUT) {
                Ok(_) => return true,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => return false,
            }
        }
    });
    assert!(reached, "the restored left-over link passes traffic");
    NetnsLink::restore("tnothing").expect("nothing to restore is fine");

    // The next start cleans up after both forgotten links.
    drop(NetnsLink::create_with_addresses(tag, addresses(3)).expect("created over the left-over"));
    assert!(!namespace.exists());
    assert!(!interface_exists(&rig_interface));
}

#[test]
fn drop_removes_the_namespace_and_the_veth_pair() {
    skip_unless_root!();
    let link = NetnsLink::create_with_addresses("tdrop", addresses(4)).expect("the link is created");
    let namespace = link.namespace_path();
    let rig_interface = link.rig_interface().to_string();
    let terminal_interface = link.terminal_interface().to_string();
    assert!(namespace.exists());
    assert!(interface_exists(&rig_interface));
    drop(link);
    assert!(!namespace.exists(), "{} is gone", namespace.display());
    assert!(!interface_exists(&rig_interface), "{rig_interface} is gone");
    assert!(
        !interface_exists(&terminal_interface),
        "{terminal_interface} is gone"
    );
}

#[test]
fn bad_tags_and_addresses_are_refused_before_anything_is_made() {
    let too_long = NetnsLink::create("twelve-chars").expect_err("a 12-character tag is refused");
    assert!(too_long.to_string().contains("1 to 11"), "{too_long}");
    let private = NetnsAddresses {
        rig: Ipv4Addr::new(192, 168, 1, 1),
        terminal: Ipv4Addr::new(192, 168, 1, 2),
        prefix_len: 30,
    };
    let refused =
        NetnsLink::create_with_addresses("tbad", private).expect_err("private addresses are refused");
    assert!(refused.to_string().contains("link-local"), "{refused}");
    assert!(!Path::new("/run/netns/posrig-tbad").exists());
}

#[test]
fn without_privilege_create_says_to_run_as_root_or_use_the_proxy() {
    let refusal = std::thread::spawn(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // Become nobody on this thread only (the raw system call, unlike libc's setresuid,
            // leaves the other threads alone): its effective capabilities are cleared.
            // SAFETY: plain system call on integers; this thread ends right after the check.
            let changed = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(changed, 0, "this thread drops root");
        }
        NetnsLink::create("tnopriv").expect_err("creating a namespace needs privilege")
    })
    .join()
    .expect("the unprivileged thread finishes");
    let message = refusal.to_string();
    assert!(message.contains("root") && message.contains("proxy"), "{message}");
    assert!(!Path::new("/run/netns/posrig-tnopriv").exists());
}
