//! Trigger latency: the bench writes the trigger line into the PTY master at random moments while
//! background log lines flow at UART rate; each contender reads the slave, matches the line and
//! cuts the power of a dummy terminal (a `sleep` process: SIGKILL, then reaped). The latency of a
//! firing is the contender's done time minus the time taken just before the trigger's write, both
//! on CLOCK_MONOTONIC.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use posrig_host::monotonic_ns;

use crate::pty::{self, Pty};
use crate::stream::{self, Rng};

/// How long a contender may take to act on a trigger before the run is called off.
pub const FIRING_TIMEOUT: Duration = Duration::from_secs(5);

/// A reader of the PTY slave that acts on the trigger line.
pub trait Contender {
    /// Waits until the contender is ready for the next firing: terminal powered, trigger armed.
    fn arm(&mut self) -> Result<(), String>;
    /// Waits until firing `index` (from 0) completed and returns when its steps happened.
    fn fired(&mut self, index: usize) -> Result<Stamps, String>;
}

/// When the steps of a firing happened (CLOCK_MONOTONIC, ns).
#[derive(Debug, Clone, Copy)]
pub struct Stamps {
    /// The read that brought the trigger line returned, and the action started; known for the
    /// contenders in this process, not for the peers.
    pub steps: Option<(u64, u64)>,
    /// The action completed: the dummy terminal is reaped.
    pub done_ns: u64,
}

/// One measured firing, in nanoseconds from the trigger's write.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// To the action's completion: the latency.
    pub latency: u64,
    /// Its parts, when known: write → read returned, read → action started, action.
    pub parts: Option<[u64; 3]>,
}

/// How the firings are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Firings measured.
    pub firings: usize,
    /// Firings done first and not measured (first reads, page faults, caches).
    pub warmup: usize,
    /// Seed of the line stream and of the gaps between triggers.
    pub seed: u64,
    /// Bytes per second of background log lines (a 115,200-baud UART carries 11,520).
    pub background_rate: u64,
    /// Gap between arming and the trigger line, drawn uniformly in this range of milliseconds.
    pub gap_ms: (u64, u64),
}

impl Plan {
    /// Every firing, warm-up included.
    pub fn total(&self) -> usize {
        self.warmup + self.firings
    }
}

/// Fires `plan.total()` triggers at `contender` and returns the measured firings. The background
/// stream stops and the end line is written whatever happens.
pub fn measure(pty: &Pty, contender: &mut dyn Contender, plan: &Plan) -> Result<Vec<Sample>, String> {
    let background = Background::start(pty.writer()?, plan.seed, plan.background_rate);
    let outcome = fire(pty, contender, plan);
    background.stop();
    pty.write(stream::end_line(0).as_bytes(), Duration::from_secs(1))?;
    outcome
}

fn fire(pty: &Pty, contender: &mut dyn Contender, plan: &Plan) -> Result<Vec<Sample>, String> {
    let mut rng = Rng::new(plan.seed ^ 0x5EED);
    let started = Instant::now();
    let mut samples = Vec::with_capacity(plan.firings);
    for index in 0..plan.total() {
        contender.arm()?;
        std::thread::sleep(Duration::from_micros(
            rng.between(plan.gap_ms.0 * 1000, plan.gap_ms.1 * 1000),
        ));
        let line = stream::trigger_line(started.elapsed().as_millis() as u64, index as u64);
        let t_write = monotonic_ns();
        pty.write(line.as_bytes(), Duration::from_secs(1))?;
        let stamps = contender.fired(index)?;
        if index >= plan.warmup {
            samples.push(Sample {
                latency: stamps.done_ns.saturating_sub(t_write),
                parts: stamps.steps.map(|(read_ns, started_ns)| {
                    [
                        read_ns.saturating_sub(t_write),
                        started_ns.saturating_sub(read_ns),
                        stamps.done_ns.saturating_sub(started_ns),
                    ]
                }),
            });
        }
    }
    Ok(samples)
}

/// Background log lines written into the master at a steady byte rate from a thread of their
/// own, as the terminal's other tasks would log. A line that finds the PTY full is dropped, as a
/// UART nobody reads drops it.
struct Background {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Background {
    fn start(master: File, seed: u64, rate: u64) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let started = Instant::now();
            let mut due = Duration::ZERO;
            while !stopping.load(Ordering::Relaxed) {
                let line = stream::log_line(&mut rng, due.as_millis() as u64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                let _ = pty::write_within(&master, line.as_bytes(), Duration::ZERO);
                due += Duration::from_nanos(line.len() as u64 * 1_000_000_000 / rate);
            }
        });
        Background { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
