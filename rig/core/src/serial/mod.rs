//! The serial console: a serial device read through tokio-serial on a thread of its own — the
//! same code for a USB UART on the Pi and for the PTY of the simulated terminal. Each complete
//! line is time-stamped and handed to the [`LineSink`] right there in the read path — raw first,
//! then parsed with the terminal profile: no channel, no task hop between the byte arriving and a
//! trigger firing.
//!
//! A serial port can vanish (a USB adapter pulled out, a PTY whose other end closed). The reader
//! then reports a gap to the sink, tries to reopen the device path every
//! [`SerialSettings::reconnect_ms`] and, once it is back, reports that it resumed and delivers
//! lines again; the console stays valid throughout. A line left unfinished when the device
//! vanished is neither delivered nor glued to the next line: its text ends the gap's reason, so
//! the record keeps it, while triggers and the profile never see a truncated line.

mod settings;

pub use settings::{FlowControl, Parity, SerialSettings, SettingProblem};

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

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
    /// The descriptor commands are written to; none while the device is gone.
    writer: Arc<Mutex<Option<File>>>,
    /// Asks the reader to end the unfinished line.
    end_line: EndLine,
    stop: Option<oneshot::Sender<()>>,
    reader: Option<JoinHandle<()>>,
}

/// How the reader is asked to end the unfinished line: from another thread by a request it
/// answers once done; from its own thread (a trigger's action runs in the read path) by a flag it
/// heeds as soon as the read being handed over is done, before it reads again.
struct EndLine {
    requests: tokio::sync::mpsc::UnboundedSender<std::sync::mpsc::Sender<()>>,
    soon: Arc<AtomicBool>,
    reader: ThreadId,
}

/// How long [`Console::end_line`] waits for the reader.
const END_LINE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which serial device to read.
enum Device {
    /// A fresh PTY pair: the rig reads the master, the terminal opens the slave.
    Pty,
    /// A serial port by path, reopened whenever it vanishes.
    Port(SerialSettings),
}

/// What the reading thread hands back once the device is open: its name.
type Opened = Result<String>;

impl SerialConsole {
    /// Creates a PTY pair and reads its master end; the terminal opens [`Console::device`]. The
    /// slave end stays open as long as the console, so the PTY survives the terminal's power
    /// cycles.
    pub fn pty(profile: Arc<Profile>, sink: Arc<dyn LineSink>) -> Result<SerialConsole> {
        SerialConsole::start(Device::Pty, profile, sink)
    }

    /// Opens the serial port `settings` describe and reads it. Fails at once, naming the
    /// device, when a setting is wrong or the device is not there; once open, the console
    /// rides out the device vanishing and coming back (see the module documentation).
    pub fn open(
        settings: &SerialSettings,
        profile: Arc<Profile>,
        sink: Arc<dyn LineSink>,
    ) -> Result<SerialConsole> {
        let problems = settings.validate();
        if !problems.is_empty() {
            let sentences: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(RigError::Other(format!(
                "the serial port {} is misconfigured: {}",
                settings.device,
                sentences.join("; ")
            )));
        }
        SerialConsole::start(Device::Port(settings.clone()), profile, sink)
    }

    /// Starts the reading thread, which opens the device inside its own runtime (tokio-serial
    /// registers the device with the runtime that opens it).
    fn start(device: Device, profile: Arc<Profile>, sink: Arc<dyn LineSink>) -> Result<SerialConsole> {
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<Opened>();
        let (stop, stopped) = oneshot::channel();
        let (end_line_requests_tx, end_line_requests) = tokio::sync::mpsc::unbounded_channel();
        let end_line_soon = Arc::new(AtomicBool::new(false));
        let reader_end_line_soon = end_line_soon.clone();
        let writer = Arc::new(Mutex::new(None));
        let reader_writer = writer.clone();
        let reader = std::thread::Builder::new()
            .name("console reader".into())
            .spawn(move || {
                let wiring = Wiring {
                    profile,
                    sink,
                    writer: reader_writer,
                    opened: opened_tx,
                    stopped,
                    end_line_requests,
                    end_line_soon: reader_end_line_soon,
                };
                read_device(device, wiring)
            })
            .map_err(|e| RigError::io("starting the console reader", e))?;
        let device = opened_rx
            .recv()
            .map_err(|_| RigError::Other("the console reader stopped before opening its device".into()))??;
        Ok(SerialConsole {
            device,
            writer,
            end_line: EndLine {
                requests: end_line_requests_tx,
                soon: end_line_soon,
                reader: reader.thread().id(),
            },
            stop: Some(stop),
            reader: Some(reader),
        })
    }
}

/// A device open for reading, with a second descriptor for writing.
struct OpenDevice {
    /// The stream the reader reads.
    port: SerialStream,
    /// A duplicate descriptor, so commands never wait for the reader.
    writer: File,
}

/// Creates a PTY pair: the master to read, the slave's name, and the slave to keep open.
fn open_pty() -> Result<(OpenDevice, String, SerialStream)> {
    let (master, slave) =
        SerialStream::pair().map_err(|e| RigError::Other(format!("cannot create a PTY: {e}")))?;
    let name = slave
        .name()
        .ok_or_else(|| RigError::Other("the PTY has no device name".into()))?;
    let writer = duplicate(&master, &name)?;
    Ok((OpenDevice { port: master, writer }, name, slave))
}

/// Opens the serial port `settings` describe, in the calling runtime.
fn open_port(settings: &SerialSettings) -> Result<OpenDevice> {
    let path = &settings.device;
    let port = SerialStream::open(&settings.builder()).map_err(|e| match e.kind() {
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::NotFound) => {
            RigError::Other(format!("no serial device {path}: is the adapter plugged in?"))
        }
        _ => RigError::Other(format!("cannot open the serial device {path}: {e}")),
    })?;
    let writer = duplicate(&port, path)?;
    Ok(OpenDevice { port, writer })
}

/// A second descriptor on `port`, for writing.
fn duplicate(port: &SerialStream, name: &str) -> Result<File> {
    // SAFETY: dup returns a new descriptor we own, or -1, which is checked.
    let duplicate = unsafe { libc::dup(port.as_raw_fd()) };
    if duplicate < 0 {
        return Err(RigError::io(
            format!("duplicating the console {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `duplicate` is a valid descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(duplicate) })
}

/// The writing slot, whatever a panicking holder left in it.
fn lock(writer: &Mutex<Option<File>>) -> MutexGuard<'_, Option<File>> {
    writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Console for SerialConsole {
    fn write(&self, bytes: &[u8]) -> Result<()> {
        match lock(&self.writer).as_mut() {
            Some(writer) => writer
                .write_all(bytes)
                .map_err(|e| RigError::io(format!("writing to the console {}", self.device), e)),
            None => Err(RigError::Other(format!(
                "cannot write to the console {}: the device is gone (adapter unplugged?); the rig \
                 reopens it as soon as it is back",
                self.device
            ))),
        }
    }

    fn device(&self) -> String {
        self.device.clone()
    }

    fn end_line(&self) -> Result<()> {
        if std::thread::current().id() == self.end_line.reader {
            // Called from the read path: the reader cannot answer while it waits here.
            self.end_line.soon.store(true, Ordering::Release);
            return Ok(());
        }
        let (done, answer) = std::sync::mpsc::channel();
        if self.end_line.requests.send(done).is_err() {
            // The reader has stopped: no line is being read.
            return Ok(());
        }
        answer.recv_timeout(END_LINE_TIMEOUT).map_err(|_| {
            RigError::Other(format!(
                "the reader of the console {} did not end its line within {END_LINE_TIMEOUT:?}",
                self.device
            ))
        })
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reader) = self.reader.take() {
            // The last reference can go on the reader's own thread, in a sink call that held the
            // last part of a rig being dropped: the reader then stops by itself after that call.
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }
}

/// What the reading thread is given besides its device.
struct Wiring {
    profile: Arc<Profile>,
    sink: Arc<dyn LineSink>,
    /// Where the reader puts the descriptor commands are written to.
    writer: Arc<Mutex<Option<File>>>,
    /// Where it reports the device open (or why not).
    opened: std::sync::mpsc::Sender<Opened>,
    stopped: oneshot::Receiver<()>,
    end_line_requests: tokio::sync::mpsc::UnboundedReceiver<std::sync::mpsc::Sender<()>>,
    /// Set when the read path itself asked to end the line.
    end_line_soon: Arc<AtomicBool>,
}

/// The reading thread: a single-threaded runtime that opens the device, reports it open, then
/// wakes on bytes, splits lines and calls the sink for each, until told to stop. A port that
/// vanishes is reopened; a PTY master is read again after a pause. Asked to end the unfinished
/// line, it reads what has arrived and hands what is left of a line to the sink as unfinished.
fn read_device(device: Device, wiring: Wiring) {
    let Wiring {
        profile,
        sink,
        writer,
        opened,
        mut stopped,
        mut end_line_requests,
        end_line_soon,
    } = wiring;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(RigError::io("starting the console reader's runtime", e)));
            return;
        }
    };
    runtime.block_on(async move {
        let open = match &device {
            Device::Pty => open_pty().map(|(open, name, slave)| (open, name, Some(slave))),
            Device::Port(settings) => open_port(settings).map(|open| (open, settings.device.clone(), None)),
        };
        let (
            OpenDevice {
                mut port,
                writer: writing,
            },
            name,
            _slave,
        ) = match open {
            Ok(open) => open,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        *lock(&writer) = Some(writing);
        if opened.send(Ok(name.clone())).is_err() {
            return;
        }
        let mut pending: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = tokio::select! {
                read = AsyncReadExt::read(&mut port, &mut chunk) => read,
                Some(done) = end_line_requests.recv() => {
                    end_line_now(&port, &mut chunk, &mut pending, &profile, &sink, &end_line_soon);
                    let _ = done.send(());
                    continue;
                }
                _ = &mut stopped => return,
            };
            let t_ns = now_ns();
            let read = match read {
                Ok(n) if n > 0 => {
                    deliver(&chunk[..n], &mut pending, t_ns, &profile, &sink);
                    if end_line_soon.load(Ordering::Acquire) {
                        end_line_now(&port, &mut chunk, &mut pending, &profile, &sink, &end_line_soon);
                    }
                    continue;
                }
                read => read,
            };
            let Device::Port(settings) = &device else {
                // Nothing, or EIO while the terminal has the PTY's slave closed: read again.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            *lock(&writer) = None;
            drop(port);
            let mut reason = match read {
                Ok(_) => "the device hung up".to_string(),
                Err(e) => format!("reading failed: {e}"),
            };
            if let Some(unfinished) = take_unfinished(&mut pending) {
                reason.push_str(&format!("; unfinished line: {unfinished}"));
            }
            sink.gap(t_ns, &name, &reason);
            let Some(back) = reopen(settings, &mut stopped, &mut end_line_requests).await else {
                return;
            };
            port = back.port;
            *lock(&writer) = Some(back.writer);
            sink.resumed(now_ns(), &name);
        }
    });
}

/// Ends the unfinished line (see [`Console::end_line`]): reads what has arrived, since the rest of
/// what the terminal wrote before its power went may wait beyond the last read, then hands what
/// is left of a line to `sink` as unfinished.
fn end_line_now(
    port: &SerialStream,
    chunk: &mut [u8],
    pending: &mut Vec<u8>,
    profile: &Profile,
    sink: &Arc<dyn LineSink>,
    requested: &AtomicBool,
) {
    while let Some(n) = read_arrived(port, chunk) {
        deliver(&chunk[..n], pending, now_ns(), profile, sink);
    }
    requested.store(false, Ordering::Release);
    if let Some(unfinished) = take_unfinished(pending) {
        sink.unfinished(now_ns(), &unfinished);
    }
}

/// Takes what is left of a line out of `pending`, if anything.
fn take_unfinished(pending: &mut Vec<u8>) -> Option<String> {
    if pending.is_empty() {
        return None;
    }
    let unfinished = String::from_utf8_lossy(pending)
        .trim_end_matches('\r')
        .to_string();
    pending.clear();
    Some(unfinished)
}

/// Reads, without waiting, what has arrived on `port`; None when nothing has.
fn read_arrived(port: &SerialStream, chunk: &mut [u8]) -> Option<usize> {
    let mut poll = libc::pollfd {
        fd: port.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready != 1 || poll.revents & libc::POLLIN == 0 {
        return None;
    }
    // SAFETY: reads into `chunk`, which we own, at most its length; poll said it will not block.
    let read = unsafe { libc::read(port.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
    usize::try_from(read).ok().filter(|&n| n > 0)
}

/// Tries to open the port every `settings.reconnect_ms` until it opens, or gives up (`None`)
/// as soon as the console is stopped. While the port is gone there is no line to end: requests
/// to end one are answered at once (the gap took the unfinished line).
async fn reopen(
    settings: &SerialSettings,
    stopped: &mut oneshot::Receiver<()>,
    end_line_requests: &mut tokio::sync::mpsc::UnboundedReceiver<std::sync::mpsc::Sender<()>>,
) -> Option<OpenDevice> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.reconnect()) => {}
            Some(done) = end_line_requests.recv() => {
                let _ = done.send(());
                continue;
            }
            _ = &mut *stopped => return None,
        }
        if let Ok(open) = open_port(settings) {
            return Some(open);
        }
    }
}

/// Splits `bytes` into lines (carrying a partial line over in `pending`) and hands each to `sink`.
/// The complete lines of a read are checked as UTF-8 in one go; a read with invalid bytes is
/// taken line by line, each made valid with U+FFFD.
fn deliver(bytes: &[u8], pending: &mut Vec<u8>, t_ns: u64, profile: &Profile, sink: &Arc<dyn LineSink>) {
    let Some(last) = memchr::memrchr(b'\n', bytes) else {
        pending.extend_from_slice(bytes);
        return;
    };
    let (mut complete, partial) = bytes.split_at(last + 1);
    if !pending.is_empty() {
        let end = memchr::memchr(b'\n', complete).unwrap_or(last);
        pending.extend_from_slice(&complete[..end]);
        hand_over(&String::from_utf8_lossy(pending), t_ns, profile, sink);
        pending.clear();
        complete = &complete[end + 1..];
    }
    match std::str::from_utf8(complete) {
        Ok(text) => text
            .split_terminator('\n')
            .for_each(|line| hand_over(line, t_ns, profile, sink)),
        Err(_) => complete
            .split(|&b| b == b'\n')
            .take(complete.iter().filter(|&&b| b == b'\n').count())
            .for_each(|line| hand_over(&String::from_utf8_lossy(line), t_ns, profile, sink)),
    }
    pending.extend_from_slice(partial);
}

/// One complete line to `sink`: raw first (console triggers act there), then with its event.
fn hand_over(line: &str, t_ns: u64, profile: &Profile, sink: &Arc<dyn LineSink>) {
    let text = line.trim_end_matches('\r');
    sink.raw(text, t_ns);
    let event = profile.parse(text);
    sink.line(&ConsoleLine {
        t_ns,
        text: text.to_string(),
        event,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `deliver` hands over, raw and parsed, for reads of `chunks`.
    fn lines_of(chunks: &[&[u8]]) -> Vec<(String, Option<String>)> {
        let profile = Profile::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/terminals/posterm.toml"
        )))
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: Arc<dyn LineSink> = {
            let seen = seen.clone();
            Arc::new(move |line: &ConsoleLine| {
                let event = line.event.as_ref().map(|e| e.name.clone());
                seen.lock().unwrap().push((line.text.clone(), event));
            })
        };
        let mut pending = Vec::new();
        for chunk in chunks {
            deliver(chunk, &mut pending, 1, &profile, &sink);
        }
        let lines = seen.lock().unwrap().clone();
        lines
    }

    #[test]
    fn lines_split_across_reads_and_characters_arrive_whole() {
        let text = "[ 1.0] READY\r\n[ 2.0] CARD read name=\"银联\" pan=6222\n\n[ 3.0] BOOT x\n";
        let bytes = text.as_bytes();
        let cut = text.find("银").unwrap() + 1; // inside the character
        let lines = lines_of(&[&bytes[..5], &bytes[5..cut], &bytes[cut..]]);
        let texts: Vec<&str> = lines.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "[ 1.0] READY",
                "[ 2.0] CARD read name=\"银联\" pan=6222",
                "",
                "[ 3.0] BOOT x"
            ]
        );
        assert_eq!(lines[1].1.as_deref(), Some("card_read"));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters_and_the_line_still_counts() {
        let lines = lines_of(&[b"[ 1.0] READY \xff\n[ 2.0] BOOT ok\npartial"]);
        assert_eq!(lines.len(), 2, "the unfinished line waits for its end");
        assert_eq!(lines[0].0, "[ 1.0] READY \u{fffd}");
        assert_eq!(lines[0].1.as_deref(), Some("ready"));
        assert_eq!(lines[1].0, "[ 2.0] BOOT ok");
    }
}
