//! The serial console: a serial device read through tokio-serial on a thread of its own — the
//! same code for a USB UART on the Pi and for the PTY of the simulated terminal. Each complete
//! line is time-stamped and handed to the [`LineSink`] right there in the read path — raw first,
//! then parsed with the terminal profile: no channel, no task hop between the byte arriving and a
//! trigger firing.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio_serial::{SerialPort, SerialStream};

use crate::capability::{Console, ConsoleLine, LineSink};
use crate::error::{Result, RigError};
use crate::profile::Profile;
use crate::timeline::now_ns;

/// A console being read.
pub struct SerialConsole {
    device: String,
    writer: Mutex<std::fs::File>,
    stop: Option<oneshot::Sender<()>>,
    reader: Option<JoinHandle<()>>,
}

/// Which serial device to read.
enum Device {
    /// A fresh PTY pair: the rig reads the master, the terminal opens the slave.
    Pty,
    /// A serial port by path, raw, at this baud rate, 8N1.
    Port { path: String, baud: u32 },
}

/// What the reading thread hands back once the device is open: its name and a writing handle.
type Opened = Result<(String, std::fs::File)>;

impl SerialConsole {
    /// Creates a PTY pair and reads its master end; the terminal opens [`Console::device`]. The
    /// slave end stays open as long as the console, so the PTY survives the terminal's power
    /// cycles.
    pub fn pty(profile: Arc<Profile>, sink: Arc<dyn LineSink>) -> Result<SerialConsole> {
        SerialConsole::start(Device::Pty, profile, sink)
    }

    /// Opens the serial device at `path` (raw, `baud` 8N1) and reads it.
    pub fn open(
        path: &str,
        baud: u32,
        profile: Arc<Profile>,
        sink: Arc<dyn LineSink>,
    ) -> Result<SerialConsole> {
        let device = Device::Port {
            path: path.to_string(),
            baud,
        };
        SerialConsole::start(device, profile, sink)
    }

    /// Starts the reading thread, which opens the device inside its own runtime (tokio-serial
    /// registers the device with the runtime that opens it).
    fn start(device: Device, profile: Arc<Profile>, sink: Arc<dyn LineSink>) -> Result<SerialConsole> {
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<Opened>();
        let (stop, stopped) = oneshot::channel();
        let reader = std::thread::Builder::new()
            .name("console reader".into())
            .spawn(move || read_device(device, profile, sink, opened_tx, stopped))
            .map_err(|e| RigError::io("starting the console reader", e))?;
        let (device, writer) = opened_rx
            .recv()
            .map_err(|_| RigError::Other("the console reader stopped before opening its device".into()))??;
        Ok(SerialConsole {
            device,
            writer: Mutex::new(writer),
            stop: Some(stop),
            reader: Some(reader),
        })
    }
}

/// Opens `device` in the calling runtime: the stream to read, its name, a descriptor to write,
/// and the PTY slave to keep open.
fn open_device(device: Device) -> Result<(SerialStream, String, std::fs::File, Option<SerialStream>)> {
    let (port, name, slave) = match device {
        Device::Pty => {
            let (master, slave) =
                SerialStream::pair().map_err(|e| RigError::Other(format!("cannot create a PTY: {e}")))?;
            let name = slave
                .name()
                .ok_or_else(|| RigError::Other("the PTY has no device name".into()))?;
            (master, name, Some(slave))
        }
        Device::Port { path, baud } => {
            let port = SerialStream::open(&tokio_serial::new(&path, baud))
                .map_err(|e| RigError::Other(format!("cannot open the console {path}: {e}")))?;
            (port, path, None)
        }
    };
    // A second descriptor for writing, so commands never wait for the reader.
    // SAFETY: dup returns a new descriptor we own, or -1, which is checked.
    let duplicate = unsafe { libc::dup(port.as_raw_fd()) };
    if duplicate < 0 {
        return Err(RigError::io(
            format!("duplicating the console {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `duplicate` is a valid descriptor nobody else owns.
    let writer = unsafe { std::fs::File::from_raw_fd(duplicate) };
    Ok((port, name, writer, slave))
}

impl Console for SerialConsole {
    fn write(&self, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer.lock().expect("console writer lock");
        writer
            .write_all(bytes)
            .map_err(|e| RigError::io(format!("writing to the console {}", self.device), e))
    }

    fn device(&self) -> String {
        self.device.clone()
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reading thread: a single-threaded runtime that opens the device, reports it open, then
/// wakes on bytes, splits lines and calls the sink for each, until told to stop.
fn read_device(
    device: Device,
    profile: Arc<Profile>,
    sink: Arc<dyn LineSink>,
    opened: std::sync::mpsc::Sender<Opened>,
    mut stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(RigError::io("starting the console reader's runtime", e)));
            return;
        }
    };
    runtime.block_on(async move {
        let (mut port, name, writer, _slave) = match open_device(device) {
            Ok(open) => open,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        if opened.send(Ok((name, writer))).is_err() {
            return;
        }
        let mut pending: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = tokio::select! {
                read = AsyncReadExt::read(&mut port, &mut chunk) => read,
                _ = &mut stopped => return,
            };
            let t_ns = now_ns();
            match read {
                Ok(n) if n > 0 => deliver(&chunk[..n], &mut pending, t_ns, &profile, &sink),
                // Nothing, or EIO while the other end of a PTY is closed, or a UART that went away:
                // wait and read again (the USB reconnect logic of the Linux backend builds on this).
                _ => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    });
}

/// Splits `bytes` into lines (carrying a partial line over in `pending`) and hands each to `sink`.
fn deliver(bytes: &[u8], pending: &mut Vec<u8>, t_ns: u64, profile: &Profile, sink: &Arc<dyn LineSink>) {
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = if pending.is_empty() {
            &rest[..end]
        } else {
            pending.extend_from_slice(&rest[..end]);
            &pending[..]
        };
        let text = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(line),
        };
        let text = text.trim_end_matches('\r');
        sink.raw(text, t_ns);
        let event = profile.parse(text);
        sink.line(&ConsoleLine {
            t_ns,
            text: text.to_string(),
            event,
        });
        pending.clear();
        rest = &rest[end + 1..];
    }
    pending.extend_from_slice(rest);
}
