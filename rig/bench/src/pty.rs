//! The PTY every contender reads: the bench holds the master and writes the terminal's side of
//! the line into it; contenders open the slave by its path, as they would open a UART.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// A PTY pair. The bench keeps the slave open too, so the PTY and its settings outlive each
/// contender that opens and closes it.
pub struct Pty {
    master: File,
    slave: File,
    path: String,
}

impl Pty {
    /// Creates a PTY pair, its slave in raw mode.
    pub fn open() -> Result<Pty, String> {
        // SAFETY: posix_openpt returns a new descriptor we own, or -1, which is checked.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if master < 0 {
            return Err(format!(
                "cannot create a PTY: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `master` is a valid descriptor nobody else owns.
        let master = unsafe { File::from_raw_fd(master) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: grantpt and unlockpt take the master descriptor; ptsname_r writes a
        // NUL-terminated name of at most `name.len()` bytes into the buffer we own.
        let failed = unsafe {
            libc::grantpt(master.as_raw_fd()) != 0
                || libc::unlockpt(master.as_raw_fd()) != 0
                || libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0
        };
        if failed {
            return Err(format!(
                "cannot unlock the PTY: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let slave = open_port(&path)?;
        Ok(Pty { master, slave, path })
    }

    /// The slave's path, e.g. `/dev/pts/3`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A second handle on the master, for a writer thread.
    pub fn writer(&self) -> Result<File, String> {
        self.master
            .try_clone()
            .map_err(|e| format!("cannot duplicate the PTY master: {e}"))
    }

    /// Writes `bytes` into the master (the terminal transmits), waiting at most `timeout` for room.
    pub fn write(&self, bytes: &[u8], timeout: Duration) -> Result<(), String> {
        write_within(&self.master, bytes, timeout)
    }

    /// Readies the PTY for the next contender: raw mode again, nothing left unread in either
    /// direction, and no exclusive lock (serialport's TIOCEXCL outlives the port that set it
    /// while the bench holds the slave open).
    pub fn reset(&self) -> Result<(), String> {
        let fd = self.slave.as_raw_fd();
        // SAFETY: TIOCNXCL and tcflush take only the descriptor, which we own.
        unsafe {
            libc::ioctl(fd, libc::TIOCNXCL);
            libc::tcflush(fd, libc::TCIOFLUSH);
        }
        make_raw(&self.slave)
    }

    /// Drops whatever the slave has not read yet, which unblocks a writer stuck on a full PTY.
    pub fn discard_input(&self) {
        // SAFETY: tcflush takes only the descriptor, which we own.
        unsafe { libc::tcflush(self.slave.as_raw_fd(), libc::TCIFLUSH) };
    }
}

/// Opens a serial device like a UART: read-write, not as the controlling terminal, raw.
pub fn open_port(path: &str) -> Result<File, String> {
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    make_raw(&port)?;
    Ok(port)
}

/// Puts a terminal in raw mode: no line editing, no echo, reads return as soon as a byte is there.
fn make_raw(port: &File) -> Result<(), String> {
    // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw edits it, tcsetattr reads it.
    let failed = unsafe {
        let mut settings: libc::termios = std::mem::zeroed();
        libc::tcgetattr(port.as_raw_fd(), &mut settings) != 0 || {
            libc::cfmakeraw(&mut settings);
            libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, &settings) != 0
        }
    };
    if failed {
        return Err(format!(
            "cannot set raw mode: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Whether `file` takes a write within `timeout`.
pub fn writable(file: &File, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd we own.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
    ready == 1 && poll.revents & libc::POLLOUT != 0
}

/// Writes `bytes` to `file` once it has room, failing when it has none within `timeout` (the
/// reader is gone and the PTY is full).
pub fn write_within(mut file: &File, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    if !writable(file, timeout) {
        return Err(format!(
            "the PTY stayed full for {timeout:?}: the reader stopped reading"
        ));
    }
    file.write_all(bytes)
        .map_err(|e| format!("writing into the PTY: {e}"))
}
