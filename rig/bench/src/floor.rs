//! The floor: the least a reader can do — a blocking `read` loop on the slave that splits lines,
//! finds the trigger line with a substring search and kills the dummy terminal right there. What
//! it measures is the kernel's PTY path plus the kill; nothing a contender does can beat it.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use memchr::memmem::Finder;
use posrig_host::monotonic_ns;

use crate::ingest::{Meter, Reading};
use crate::latency::{Contender, Stamps, FIRING_TIMEOUT};
use crate::pty;
use crate::stream::{END_TAG, TRIGGER_NEEDLE};

/// Reads `port` and calls `line` with each complete line (without its `\n`) and the time the read
/// that completed it returned, until it returns false or the port fails.
fn read_lines(mut port: File, mut line: impl FnMut(&[u8], u64) -> bool) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let n = match port.read(&mut chunk) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let read_ns = monotonic_ns();
        let mut rest = &chunk[..n];
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let go_on = if pending.is_empty() {
                line(&rest[..end], read_ns)
            } else {
                pending.extend_from_slice(&rest[..end]);
                let go_on = line(&pending, read_ns);
                pending.clear();
                go_on
            };
            if !go_on {
                return;
            }
            rest = &rest[end + 1..];
        }
        pending.extend_from_slice(rest);
    }
}

/// Starts a dummy terminal: a process to kill, as SimPower kills posterm.
pub fn spawn_dummy() -> Result<i32, String> {
    let mut command = Command::new("sleep");
    command.arg("1000").stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: only prctl, async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| format!("cannot start sleep: {e}"))?;
    // Whoever kills it reaps it with waitpid; the Child handle is not needed for that.
    Ok(child.id() as i32)
}

/// Kills the process `pid` with SIGKILL and reaps it; 0 means none.
fn kill_and_reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: kill and waitpid take the id of a child of ours; a null status pointer is allowed.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The floor as a latency contender.
pub struct Floor {
    pid: Arc<AtomicI32>,
    done: Receiver<Stamps>,
    reader: Option<JoinHandle<()>>,
}

impl Floor {
    /// Opens the slave at `path` and starts reading it.
    pub fn open(path: &str) -> Result<Floor, String> {
        let port = pty::open_port(path)?;
        let pid = Arc::new(AtomicI32::new(0));
        let (done_tx, done) = mpsc::channel();
        let target = pid.clone();
        let finder = Finder::new(TRIGGER_NEEDLE);
        let reader = std::thread::spawn(move || {
            read_lines(port, |line, read_ns| {
                if finder.find(line).is_some() {
                    let started_ns = monotonic_ns();
                    kill_and_reap(target.swap(0, Ordering::SeqCst));
                    let done_ns = monotonic_ns();
                    let _ = done_tx.send(Stamps {
                        steps: Some((read_ns, started_ns)),
                        done_ns,
                    });
                }
                !line.ends_with(END_TAG.as_bytes())
            })
        });
        Ok(Floor {
            pid,
            done,
            reader: Some(reader),
        })
    }
}

impl Contender for Floor {
    fn arm(&mut self) -> Result<(), String> {
        self.pid.store(spawn_dummy()?, Ordering::SeqCst);
        Ok(())
    }

    fn fired(&mut self, index: usize) -> Result<Stamps, String> {
        self.done
            .recv_timeout(FIRING_TIMEOUT)
            .map_err(|_| format!("the floor did not act on trigger {index} within {FIRING_TIMEOUT:?}"))
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // The end line written after the last firing stops the reader.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        kill_and_reap(self.pid.swap(0, Ordering::SeqCst));
    }
}

/// The floor as an ingest reader: the same loop and search, counting lines. The reading thread
/// ends at the end line.
pub fn ingest(path: &str) -> Result<(JoinHandle<()>, Receiver<Reading>), String> {
    let port = pty::open_port(path)?;
    let (meter, reading) = Meter::new(false);
    let finder = Finder::new(TRIGGER_NEEDLE);
    let reader = std::thread::spawn(move || {
        read_lines(port, |line, _| {
            std::hint::black_box(finder.find(line));
            meter.line(line, false)
        })
    });
    Ok((reader, reading))
}
