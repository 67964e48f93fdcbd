//! The console: a serial device (a PTY on the simulated rig, a UART on a real terminal). Commands
//! come in as lines; the log goes out as lines `[SSSSS.mmm] TAG text`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

/// The console port and the line being typed.
pub struct Console {
    port: TTYPort,
    pending: Vec<u8>,
    started: Instant,
}

impl Console {
    /// Opens the serial device at `path` (115200 8N1, raw).
    pub fn open(path: &str) -> Result<Console, String> {
        let port = serialport::new(path, 115_200)
            .timeout(Duration::from_millis(200))
            .exclusive(false)
            .open_native()
            .map_err(|e| format!("cannot open console {path}: {e}"))?;
        Ok(Console {
            port,
            pending: Vec::new(),
            started: Instant::now(),
        })
    }

    /// Writes one log line: uptime, tag, text.
    pub fn log(&mut self, tag: &str, text: &str) {
        let uptime = self.started.elapsed();
        let line = format!(
            "[{:5}.{:03}] {tag} {text}\n",
            uptime.as_secs(),
            uptime.subsec_millis()
        );
        // A console nobody reads must not stop the terminal: a failed write is dropped, as a UART would.
        let _ = self.port.write_all(line.as_bytes());
    }

    /// The next command line, waiting up to the port timeout; `None` when nothing complete arrived.
    pub fn next_command(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                return Some(text);
            }
            let mut chunk = [0u8; 256];
            match self.port.read(&mut chunk) {
                Ok(n) if n > 0 => self.pending.extend_from_slice(&chunk[..n]),
                Ok(_) => return None,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
                Err(_) => {
                    // The other end of the line is gone (PTY master closed, cable out): wait for it.
                    std::thread::sleep(self.port.timeout());
                    return None;
                }
            }
        }
    }
}
