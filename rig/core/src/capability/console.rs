//! The terminal's serial console.

use crate::error::Result;
use crate::profile::Event;

/// One line the terminal wrote, time-stamped when its last byte was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// Rig clock (CLOCK_MONOTONIC) in nanoseconds.
    pub t_ns: u64,
    /// The line without its ending.
    pub text: String,
    /// Its canonical event, when the terminal profile recognises it.
    pub event: Option<Event>,
}

/// Receives every console line on the reading thread, as soon as it is complete: first the raw
/// text, before anything else is done with it (console-regex triggers act there), then the line
/// with its canonical event. Matching happens in the read path, with no hop.
pub trait LineSink: Send + Sync {
    /// The raw text of a line the moment its last byte was read, before it is parsed.
    fn raw(&self, _text: &str, _t_ns: u64) {}
    /// The line with its canonical event.
    fn line(&self, line: &ConsoleLine);
    /// The console's `device` vanished at `t_ns` (adapter unplugged, hang-up, read error): no
    /// lines come until [`LineSink::resumed`]. `reason` says why and, when the device went in
    /// the middle of a line, ends with `; unfinished line: ` and that line's text, which is not
    /// delivered as a line.
    fn gap(&self, _t_ns: u64, _device: &str, _reason: &str) {}
    /// The console's `device` is back at `t_ns`, reopened with its settings; lines follow again.
    fn resumed(&self, _t_ns: u64, _device: &str) {}
    /// The terminal left a line unfinished (it lost power in the middle of it), ended at `t_ns`
    /// by [`Console::end_line`] with this `text`, which is not delivered as a line.
    fn unfinished(&self, _t_ns: u64, _text: &str) {}
}

impl<F: Fn(&ConsoleLine) + Send + Sync> LineSink for F {
    fn line(&self, line: &ConsoleLine) {
        self(line)
    }
}

/// Bytes out to the terminal's console (commands); lines come in through the [`LineSink`] the
/// console was opened with.
pub trait Console: Send + Sync {
    /// Writes bytes to the terminal.
    fn write(&self, bytes: &[u8]) -> Result<()>;
    /// The device the console reads, e.g. `/dev/ttyUSB0` or a PTY.
    fn device(&self) -> String;
    /// Ends the line the terminal was writing, if it left one unfinished: its text goes to
    /// [`LineSink::unfinished`] and the next byte begins a new line. A terminal that loses power
    /// mid-line never finishes it, so the rig calls this as it powers the terminal on again, or
    /// the first line after boot would be glued to the tail of the last one before the cut.
    /// Returns once what had arrived is read and the line is ended.
    fn end_line(&self) -> Result<()>;
}
