//! The terminal's connection to the acquirer: one TCP connection per exchange, as CUP terminals
//! do, with the length-prefixed framing of the spec.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use posrig_iso8583::{Codec, Message};

/// Why an exchange produced no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be opened: nothing was sent.
    Unreachable(String),
    /// The request could not be encoded (a stored record with a bad field): nothing was sent.
    Unencodable(String),
    /// The request was sent and no reply came in time.
    Timeout,
    /// The request was sent and the connection ended before a reply.
    Closed(String),
}

/// A reply as received.
pub struct Received {
    /// The decoded reply.
    pub message: Message,
    /// Its bytes (without the length prefix), for the MAC check.
    pub raw: Vec<u8>,
}

/// Where the host is and how long to wait for it.
pub struct HostLink {
    addr: String,
    timeout: Duration,
}

/// An open connection to the host.
pub struct Session {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl HostLink {
    /// A link to `addr` ("host:port") with reply timeout `timeout`.
    pub fn new(addr: &str, timeout: Duration) -> HostLink {
        HostLink {
            addr: addr.to_string(),
            timeout,
        }
    }

    /// The reply timeout T_resp.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens a connection, giving up after the reply timeout.
    pub fn connect(&self) -> Result<Session, Failure> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| Failure::Unreachable(format!("{}: {e}", self.addr)))?
            .collect();
        let mut last = format!("{}: no address", self.addr);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Session {
                        stream,
                        buffer: Vec::new(),
                    });
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(Failure::Unreachable(last))
    }
}

impl Session {
    /// Sends one framed message.
    pub fn send(&mut self, framed: &[u8]) -> Result<(), Failure> {
        self.stream
            .write_all(framed)
            .map_err(|e| Failure::Closed(format!("send failed: {e}")))
    }

    /// Waits until `deadline` for the next frame. Frames that do not decode are reported through
    /// `on_garbled` and skipped.
    pub fn receive(
        &mut self,
        codec: &Codec,
        deadline: Instant,
        mut on_garbled: impl FnMut(String),
    ) -> Result<Received, Failure> {
        loop {
            if let Some((body, used)) = codec.split_frame(&self.buffer) {
                let raw = body.to_vec();
                self.buffer.drain(..used);
                match codec.decode(&raw) {
                    Ok(message) => return Ok(Received { message, raw }),
                    Err(e) => {
                        on_garbled(e.to_string());
                        continue;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| Failure::Closed(e.to_string()))?;
            let mut chunk = [0u8; 2048];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Closed("the host closed the connection".into())),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Failure::Timeout)
                }
                Err(e) => return Err(Failure::Closed(e.to_string())),
            }
        }
    }
}
