//! The lab's side of the terminal's console: the master end of a PTY, read by a thread that
//! time-stamps every line on the rig's clock and parses it with the terminal profile.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use posrig_host::monotonic_ns;
use serialport::{SerialPort, TTYPort};

use posrig_core::profile::{Event, Profile};

/// One line the terminal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// Rig clock (CLOCK_MONOTONIC) in nanoseconds when the line was complete.
    pub t_ns: u64,
    /// The line without its ending.
    pub text: String,
    /// Its canonical event, when the profile recognises it.
    pub event: Option<Event>,
}

type Lines = Arc<(Mutex<Vec<ConsoleLine>>, Condvar)>;

/// A PTY pair whose slave is the terminal's console device.
pub struct ConsoleTap {
    lines: Lines,
    writer: Mutex<TTYPort>,
    device: String,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    // Held open so the PTY survives the terminal's power cycles without hang-ups.
    _slave: TTYPort,
}

impl ConsoleTap {
    /// Creates the PTY and starts reading it.
    pub fn open(profile: Arc<Profile>) -> Result<ConsoleTap, String> {
        let (master, slave) = TTYPort::pair().map_err(|e| format!("cannot create a PTY: {e}"))?;
        let device = slave.name().ok_or("the PTY has no device name")?;
        let mut reading = master
            .try_clone_native()
            .map_err(|e| format!("cannot clone the PTY master: {e}"))?;
        reading
            .set_timeout(Duration::from_millis(50))
            .map_err(|e| format!("cannot set the PTY timeout: {e}"))?;
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::spawn(move || read_lines(reading, profile, lines, stop))
        };
        Ok(ConsoleTap {
            lines,
            writer: Mutex::new(master),
            device,
            stop,
            reader: Some(reader),
            _slave: slave,
        })
    }

    /// The device path the terminal opens (`/dev/pts/N`).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Writes text to the terminal.
    pub fn write(&self, text: &str) -> Result<(), String> {
        let mut writer = self.writer.lock().expect("console writer lock");
        writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to the console: {e}"))
    }

    /// Number of lines read so far: a mark to wait from.
    pub fn mark(&self) -> usize {
        self.lines.0.lock().expect("console lock").len()
    }

    /// Every line read so far.
    pub fn lines(&self) -> Vec<ConsoleLine> {
        self.lines.0.lock().expect("console lock").clone()
    }

    /// Waits for the first line at or after `since` whose event satisfies `wanted`; returns its
    /// index and the line.
    pub fn wait_for(
        &self,
        since: usize,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<(usize, ConsoleLine), String> {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.lines;
        let mut lines = lock.lock().expect("console lock");
        let mut next = since;
        loop {
            while next < lines.len() {
                if lines[next].event.as_ref().is_some_and(&wanted) {
                    return Ok((next, lines[next].clone()));
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no such console event within {timeout:?}"));
            }
            lines = ready.wait_timeout(lines, left).expect("console lock").0;
        }
    }
}

impl Drop for ConsoleTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_lines(mut port: TTYPort, profile: Arc<Profile>, lines: Lines, stop: Arc<AtomicBool>) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let n = match port.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        pending.extend_from_slice(&chunk[..n]);
        let t_ns = monotonic_ns();
        let mut complete = Vec::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let event = profile.parse(&text);
            complete.push(ConsoleLine { t_ns, text, event });
        }
        if !complete.is_empty() {
            let (lock, ready) = &*lines;
            lock.lock().expect("console lock").extend(complete);
            ready.notify_all();
        }
    }
}
