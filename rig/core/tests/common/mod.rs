//! What the network-namespace tests share: running as root, entering the terminal's namespace,
//! connecting from it, and a listener on the rig's side of the veth.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use posrig_core::sim::netns::{NetnsAddresses, NetnsLink};

/// How long a client waits for a connection; blocked traffic makes it time out.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Returns early from a test, saying why, unless it runs as root.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: network namespaces and nftables need root (CI runs these tests as root)");
            return;
        }
    };
}

/// The link-local /30 number `subnet` of 169.254.`block`.0/24: rig side .1, terminal side .2.
pub fn addresses(block: u8, subnet: u8) -> NetnsAddresses {
    NetnsAddresses {
        rig: Ipv4Addr::new(169, 254, block, subnet * 4 + 1),
        terminal: Ipv4Addr::new(169, 254, block, subnet * 4 + 2),
        prefix_len: 30,
    }
}

/// Runs `job` on a thread that has entered the network namespace at `namespace`. Sockets it opens
/// stay in that namespace wherever they are used afterwards.
pub fn inside_namespace<T: Send + 'static>(
    namespace: PathBuf,
    job: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&namespace).expect("the namespace file opens");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("the thread enters the namespace");
        job()
    })
    .join()
    .expect("the thread inside the namespace finishes")
}

/// Connects from inside the terminal's namespace to `server`.
pub fn connect_from_terminal(link: &NetnsLink, server: SocketAddr) -> std::io::Result<TcpStream> {
    inside_namespace(link.namespace_path(), move || {
        TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)
    })
}

/// Connects from inside the terminal's namespace, retrying for a few seconds (a link that has just
/// come up may still be resolving its neighbour).
pub fn connect_from_terminal_soon(link: &NetnsLink, server: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect_from_terminal(link, server) {
            Ok(stream) => return stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => panic!("the terminal cannot reach {server}: {error}"),
        }
    }
}

/// A listener on the rig-side address, in the rig's (this process's) namespace.
pub fn listen_on_rig_side(link: &NetnsLink) -> (TcpListener, SocketAddr) {
    let listener =
        TcpListener::bind(SocketAddrV4::new(link.rig_address(), 0)).expect("binds the rig-side address");
    let address = listener.local_addr().expect("the listener has an address");
    (listener, address)
}

/// Asserts that nothing arrives on `accepted` for 800 ms: traffic stalls while the link is down.
pub fn assert_stalled(accepted: &mut TcpStream) {
    use std::io::{ErrorKind, Read};
    accepted
        .set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout set");
    let mut stalled = [0u8; 6];
    match accepted.read(&mut stalled) {
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("no data may pass while the link is down, got {other:?}"),
    }
}
