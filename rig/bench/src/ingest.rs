//! Serial ingest: the bench writes a long stream of posterm log lines into the master as fast as
//! the PTY takes them, and the contender parses every line; the figure is the time from the first
//! write to the contender seeing the last line, and the CPU the reading thread (or the peer's
//! process) spent meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use posrig_core::profile::Profile;
use posrig_host::monotonic_ns;

use crate::pty::{self, Pty};
use crate::stream::{self, Rng, END_TAG};

/// How long a contender may take over the whole stream.
const INGEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines in one block of the stream; the block is written again and again.
const BLOCK_LINES: u64 = 8192;

/// A stream of log lines: one block of random posterm lines, repeated, then the end line.
pub struct Stream {
    block: Vec<u8>,
    block_events: u64,
    repeats: u64,
    end: Vec<u8>,
}

impl Stream {
    /// About `megabytes` (10⁶ bytes) of lines; `profile` tells which lines are events.
    pub fn new(seed: u64, megabytes: f64, profile: &Profile) -> Stream {
        let mut rng = Rng::new(seed);
        let mut block = Vec::new();
        let mut block_events = 0;
        for i in 0..BLOCK_LINES {
            let line = stream::log_line(&mut rng, i * 3);
            block_events += u64::from(profile.parse(line.trim_end()).is_some());
            block.extend_from_slice(line.as_bytes());
        }
        let repeats = ((megabytes * 1e6 / block.len() as f64).ceil() as u64).max(1);
        Stream {
            block,
            block_events,
            repeats,
            end: stream::end_line(BLOCK_LINES * 3).into_bytes(),
        }
    }

    /// Lines in the stream, the end line included.
    pub fn lines(&self) -> u64 {
        BLOCK_LINES * self.repeats + 1
    }

    /// Bytes in the stream.
    pub fn bytes(&self) -> u64 {
        self.block.len() as u64 * self.repeats + self.end.len() as u64
    }

    /// Lines the terminal profile turns into events.
    pub fn events(&self) -> u64 {
        self.block_events * self.repeats
    }

    /// Writes the stream into the PTY master, as fast as it takes it, until done or `stop`.
    fn feed(&self, pty: &Pty, stop: &AtomicBool) -> Result<(), String> {
        let master = pty.writer()?;
        for _ in 0..self.repeats {
            for chunk in self.block.chunks(4096) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                pty::write_within(&master, chunk, INGEST_TIMEOUT)?;
            }
        }
        pty::write_within(&master, &self.end, INGEST_TIMEOUT)
    }
}

/// What a reader reports once it has seen the end line.
pub struct Reading {
    /// Lines it saw, when it counts them.
    pub lines: Option<u64>,
    /// Lines it turned into events, when it parses them.
    pub events: Option<u64>,
    /// When it saw the end line (CLOCK_MONOTONIC, ns).
    pub end_ns: u64,
    /// CPU time its reading thread (or process) used from the first line to the last, ns.
    pub cpu_ns: u64,
}

/// Counts lines on a reading thread and reports once the end line comes.
pub struct Meter {
    lines: AtomicU64,
    events: AtomicU64,
    cpu_start: OnceLock<u64>,
    parses: bool,
    done: Mutex<Option<Sender<Reading>>>,
}

impl Meter {
    /// A meter and where its reading arrives; `parses` tells whether the reader parses events.
    pub fn new(parses: bool) -> (Meter, Receiver<Reading>) {
        let (done, reading) = mpsc::channel();
        let meter = Meter {
            lines: AtomicU64::new(0),
            events: AtomicU64::new(0),
            cpu_start: OnceLock::new(),
            parses,
            done: Mutex::new(Some(done)),
        };
        (meter, reading)
    }

    /// Counts one line (an event or not); returns false at the end line.
    pub fn line(&self, text: &[u8], event: bool) -> bool {
        let cpu_start = *self.cpu_start.get_or_init(thread_cpu_ns);
        let lines = self.lines.fetch_add(1, Ordering::Relaxed) + 1;
        if event {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
        if !text.ends_with(END_TAG.as_bytes()) {
            return true;
        }
        let reading = Reading {
            lines: Some(lines),
            events: self.parses.then(|| self.events.load(Ordering::Relaxed)),
            end_ns: monotonic_ns(),
            cpu_ns: thread_cpu_ns().saturating_sub(cpu_start),
        };
        if let Some(done) = self.done.lock().expect("meter lock").take() {
            let _ = done.send(reading);
        }
        false
    }
}

/// CPU time (user and system) of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the rusage we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Ingest figures of one contender.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Lines in the stream.
    pub lines: u64,
    /// Bytes in the stream.
    pub bytes: u64,
    /// From the first write to the reader seeing the last line, ns.
    pub wall_ns: u64,
    /// CPU the reader used meanwhile, ns.
    pub cpu_ns: u64,
}

impl Throughput {
    /// Lines per second.
    pub fn lines_per_s(&self) -> f64 {
        self.lines as f64 * 1e9 / self.wall_ns as f64
    }

    /// Megabytes (10⁶ bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 * 1e3 / self.wall_ns as f64
    }

    /// CPU used, in percent of one core.
    pub fn cpu_percent(&self) -> f64 {
        self.cpu_ns as f64 * 100.0 / self.wall_ns as f64
    }

    /// CPU milliseconds per megabyte.
    pub fn cpu_ms_per_mb(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 / (self.bytes as f64 / 1e6)
    }
}

/// Feeds `stream` into the PTY while `wait_end` waits for the reader's reading, and checks that
/// the reader saw every line and event.
pub fn measure(
    pty: &Pty,
    stream: &Stream,
    wait_end: impl FnOnce(Duration) -> Result<Reading, String>,
) -> Result<Throughput, String> {
    let stop = AtomicBool::new(false);
    let started_ns = monotonic_ns();
    let (fed, reading) = std::thread::scope(|scope| {
        let feeder = scope.spawn(|| stream.feed(pty, &stop));
        let reading = wait_end(INGEST_TIMEOUT);
        if reading.is_err() {
            // The reader is gone: drop what it left so the feeder's write returns, and stop it.
            stop.store(true, Ordering::Relaxed);
            while !feeder.is_finished() {
                pty.discard_input();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err("the feeder panicked".into()));
        (fed, reading)
    });
    let reading = reading?;
    fed?;
    let wrong = |what: &str, saw: Option<u64>, expected: u64| match saw {
        Some(saw) if saw != expected => {
            Err(format!("the reader saw {saw} {what}, the stream had {expected}"))
        }
        _ => Ok(()),
    };
    wrong("lines", reading.lines, stream.lines())?;
    wrong("events", reading.events, stream.events())?;
    Ok(Throughput {
        lines: stream.lines(),
        bytes: stream.bytes(),
        wall_ns: reading.end_ns.saturating_sub(started_ns),
        cpu_ns: reading.cpu_ns,
    })
}
