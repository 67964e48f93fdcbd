//! The serial console on a configured port, with real PTYs standing in for a USB adapter: the
//! test holds the master (the terminal's side) and points a symlink it controls, like
//! /dev/serial/by-id/…, at the slave. Closing the master is the adapter pulled out; a new PTY
//! behind the same symlink is the adapter plugged in again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use posrig_core::actuators::{Action, Actuators, Capabilities};
use posrig_core::capability::{Console, ConsoleLine, LineSink};
use posrig_core::profile::Profile;
use posrig_core::serial::{FlowControl, Parity, SerialConsole, SerialSettings};
use posrig_core::sim::power::{SimPower, TerminalCommand};
use posrig_core::timeline::{now_ns, Timeline};
use serialport::{SerialPort, TTYPort};

const WAIT: Duration = Duration::from_secs(10);

/// Something the console told its sink.
#[derive(Debug, Clone)]
enum Seen {
    Line(ConsoleLine),
    Gap {
        t_ns: u64,
        device: String,
        reason: String,
    },
    Resumed {
        t_ns: u64,
        device: String,
    },
    Unfinished {
        text: String,
    },
}

/// A sink that records everything, in order, and lets the test wait for it.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    changed: Condvar,
}

impl Recorder {
    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
        self.changed.notify_all();
    }

    /// Waits until `done` holds for what was seen so far, and returns it.
    fn wait_until(&self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        let mut seen = self.seen.lock().unwrap();
        while !done(&seen) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {what} within {WAIT:?}; seen: {seen:#?}"));
            seen = self.changed.wait_timeout(seen, left).unwrap().0;
        }
        seen.clone()
    }

    fn lines(seen: &[Seen]) -> Vec<&ConsoleLine> {
        seen.iter()
            .filter_map(|s| match s {
                Seen::Line(line) => Some(line),
                _ => None,
            })
            .collect()
    }

    fn wait_lines(&self, count: usize) -> Vec<ConsoleLine> {
        let seen = self.wait_until(&format!("{count} lines"), |s| Recorder::lines(s).len() >= count);
        Recorder::lines(&seen).into_iter().cloned().collect()
    }

    /// Waits for the `nth` (0-based) gap: its time, device and reason.
    fn wait_gap(&self, nth: usize) -> (u64, String, String) {
        let seen = self.wait_until("gap", |s| gaps(s).len() > nth);
        gaps(&seen)[nth].clone()
    }
}

fn gaps(seen: &[Seen]) -> Vec<(u64, String, String)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Gap { t_ns, device, reason } => Some((*t_ns, device.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

impl LineSink for Recorder {
    fn line(&self, line: &ConsoleLine) {
        self.push(Seen::Line(line.clone()));
    }

    fn gap(&self, t_ns: u64, device: &str, reason: &str) {
        self.push(Seen::Gap {
            t_ns,
            device: device.to_string(),
            reason: reason.to_string(),
        });
    }

    fn resumed(&self, t_ns: u64, device: &str) {
        self.push(Seen::Resumed {
            t_ns,
            device: device.to_string(),
        });
    }

    fn unfinished(&self, _t_ns: u64, text: &str) {
        self.push(Seen::Unfinished {
            text: text.to_string(),
        });
    }
}

/// The unfinished lines seen, in order.
fn unfinished(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Unfinished { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn profile() -> Arc<Profile> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/terminals/posterm.toml"
    );
    Arc::new(Profile::load(Path::new(path)).expect("the posterm profile loads"))
}

/// A folder of its own for one test's device links, removed at the end.
struct DeviceFolder(PathBuf);

impl DeviceFolder {
    fn new(test: &str) -> DeviceFolder {
        let dir = std::env::temp_dir().join(format!("posrig-serial-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the device folder is created");
        DeviceFolder(dir)
    }

    /// The stable name of the adapter, like a /dev/serial/by-id/ link.
    fn link(&self) -> String {
        self.0
            .join("usb-FTDI_FT232R_A50285BI-if00-port0")
            .display()
            .to_string()
    }

    /// Plugs an adapter in: a fresh PTY whose slave the link now points at (replaced atomically,
    /// as udev does). Returns the master, the terminal's side of the wire.
    fn plug(&self) -> TTYPort {
        let (master, slave) = TTYPort::pair().expect("a PTY pair");
        let target = slave.name().expect("the slave has a name");
        let fresh = self.0.join("link.new");
        let _ = std::fs::remove_file(&fresh);
        std::os::unix::fs::symlink(&target, &fresh).expect("the link is created");
        std::fs::rename(&fresh, self.link()).expect("the link is re-pointed");
        master
    }
}

impl Drop for DeviceFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 115200 8N1 on `device`, written out as a rig configuration would.
fn settings(device: &str, reconnect_ms: u64) -> SerialSettings {
    let text = format!(
        "device = \"{device}\"\nbaud = 115200\ndata_bits = 8\nparity = \"none\"\nstop_bits = 1\n\
         flow_control = \"none\"\nreconnect_ms = {reconnect_ms}\n"
    );
    let settings: SerialSettings = toml::from_str(&text).expect("the settings parse");
    assert_eq!(settings.validate(), vec![], "the settings are valid");
    settings
}

fn open(settings: &SerialSettings) -> (SerialConsole, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let console = SerialConsole::open(settings, profile(), recorder.clone()).expect("the console opens");
    (console, recorder)
}

/// Reads from `master` until it has received `expected`.
fn receive(master: &mut TTYPort, expected: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    while got.len() < expected.len() && Instant::now() < deadline {
        match master.read(&mut chunk) {
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the master failed: {e}"),
        }
    }
    got
}

#[test]
fn lines_arrive_in_order_time_stamped_when_read() {
    let folder = DeviceFolder::new("lines");
    let mut master = folder.plug();
    let (console, recorder) = open(&settings(&folder.link(), 200));
    assert_eq!(console.device(), folder.link());

    let texts = [
        "[    0.010] BOOT posterm",
        "[    0.020] READY",
        "[    0.030] something else",
    ];
    for (i, text) in texts.iter().enumerate() {
        let written_ns = now_ns();
        master.write_all(format!("{text}\r\n").as_bytes()).unwrap();
        let line = recorder.wait_lines(i + 1)[i].clone();
        let seen_ns = now_ns();
        assert_eq!(line.text, *text, "line {i} arrives whole, without its ending");
        assert!(
            (written_ns..=seen_ns).contains(&line.t_ns),
            "line {i} is stamped when read: {} not within [{written_ns}, {seen_ns}]",
            line.t_ns
        );
    }
    let lines = recorder.wait_lines(texts.len());
    assert!(
        lines.windows(2).all(|w| w[0].t_ns <= w[1].t_ns),
        "times never go back"
    );
    let events: Vec<Option<&str>> = lines
        .iter()
        .map(|l| l.event.as_ref().map(|e| e.name.as_str()))
        .collect();
    assert_eq!(
        events,
        [Some("boot"), Some("ready"), None],
        "the profile parses each line"
    );

    console.write(b"status\n").expect("the console writes");
    assert_eq!(
        receive(&mut master, b"status\n"),
        b"status\n",
        "the terminal receives the command"
    );
}

/// The line settings of the PTY, read through its master (which reports the slave's).
fn line_settings(master: &TTYPort) -> libc::termios2 {
    use std::os::fd::AsRawFd;
    // SAFETY: termios2 is plain data that TCGETS2 fills.
    let mut settings: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes one termios2 through the pointer, which is valid.
    let done = unsafe { libc::ioctl(master.as_raw_fd(), libc::TCGETS2, &mut settings) };
    assert_eq!(done, 0, "TCGETS2: {}", std::io::Error::last_os_error());
    settings
}

#[test]
fn the_port_gets_its_configured_line_settings() {
    let folder = DeviceFolder::new("settings");
    let master = folder.plug();
    let seven_even_two = SerialSettings {
        baud: 9600,
        data_bits: 7,
        parity: Parity::Even,
        stop_bits: 2,
        flow_control: FlowControl::Hardware,
        ..SerialSettings::new(folder.link())
    };
    let (console, _) = open(&seven_even_two);
    let applied = line_settings(&master);
    assert_eq!((applied.c_ispeed, applied.c_ospeed), (9600, 9600), "the speed");
    // A PTY keeps stop bits and flow control, but Linux forces it to 8 data bits without
    // parity (pty_set_termios), so those two cannot be seen here.
    let flags = applied.c_cflag;
    assert_ne!(flags & libc::CSTOPB, 0, "2 stop bits");
    assert_ne!(flags & libc::CRTSCTS, 0, "RTS/CTS flow control");
    drop(console);

    let (_console, _) = open(&settings(&folder.link(), 200));
    let applied = line_settings(&master);
    assert_eq!(
        (applied.c_ispeed, applied.c_ospeed),
        (115_200, 115_200),
        "the speed"
    );
    let flags = applied.c_cflag;
    assert_eq!(
        flags & (libc::CSTOPB | libc::CRTSCTS),
        0,
        "1 stop bit, no flow control"
    );
}

#[test]
fn an_unplugged_adapter_is_a_gap_and_the_console_resumes_when_it_is_back() {
    let folder = DeviceFolder::new("replug");
    let mut master = folder.plug();
    let (console, recorder) = open(&settings(&folder.link(), 20));
    master.write_all(b"[    1.000] before\n").unwrap();
    recorder.wait_lines(1);

    // The adapter goes in the middle of a line.
    master.write_all(b"[    1.100] unfinis").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let unplugged_ns = now_ns();
    drop(master);
    let (gap_ns, device, reason) = recorder.wait_gap(0);
    assert_eq!(device, folder.link(), "the gap names the configured device");
    assert!(gap_ns >= unplugged_ns, "the gap is stamped when it was noticed");
    assert!(
        reason.ends_with("; unfinished line: [    1.100] unfinis"),
        "the gap reports the unfinished line: {reason}"
    );

    let error = console
        .write(b"status\n")
        .expect_err("no writing while the adapter is out");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot write to the console {}: the device is gone (adapter unplugged?); the rig reopens \
             it as soon as it is back",
            folder.link()
        )
    );

    let mut master = folder.plug();
    let seen = recorder.wait_until("resumed", |s| matches!(s.last(), Some(Seen::Resumed { .. })));
    let Some(Seen::Resumed { t_ns, device }) = seen.last() else {
        unreachable!("waited for it")
    };
    assert_eq!(
        *device,
        folder.link(),
        "the console resumes on the same device name"
    );
    assert!(*t_ns > gap_ns, "it resumes after the gap");

    master.write_all(b"[    2.000] after\n").unwrap();
    let lines = recorder.wait_lines(2);
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        ["[    1.000] before", "[    2.000] after"],
        "the unfinished line is neither delivered nor glued to the next one"
    );
    assert!(lines[1].t_ns > *t_ns, "lines after the gap are stamped after it");

    console.write(b"status\n").expect("the console writes again");
    assert_eq!(receive(&mut master, b"status\n"), b"status\n");
}

#[test]
fn an_adapter_unplugged_twice_is_two_gaps() {
    let folder = DeviceFolder::new("twice");
    let master = folder.plug();
    let (_console, recorder) = open(&settings(&folder.link(), 20));
    drop(master);
    let (_, _, first) = recorder.wait_gap(0);
    assert!(!first.contains("unfinished"), "no line was in progress: {first}");
    let master = folder.plug();
    recorder.wait_until("resumed", |s| matches!(s.last(), Some(Seen::Resumed { .. })));
    drop(master);
    recorder.wait_gap(1);
    let mut master = folder.plug();
    recorder.wait_until("resumed twice", |s| {
        s.iter().filter(|s| matches!(s, Seen::Resumed { .. })).count() == 2
    });
    master.write_all(b"[    3.000] third adapter\n").unwrap();
    assert_eq!(recorder.wait_lines(1)[0].text, "[    3.000] third adapter");
}

#[test]
fn dropping_the_console_while_the_adapter_is_out_returns_promptly() {
    let folder = DeviceFolder::new("drop");
    let master = folder.plug();
    // The longest pause between attempts: dropping must not wait for the next one.
    let (console, recorder) = open(&settings(&folder.link(), 60_000));
    drop(master);
    recorder.wait_gap(0);
    let started = Instant::now();
    drop(console);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "dropping took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_device_missing_at_start_is_an_error_naming_it() {
    let folder = DeviceFolder::new("missing");
    let recorder = Arc::new(Recorder::default());
    let error = SerialConsole::open(&settings(&folder.link(), 200), profile(), recorder)
        .err()
        .expect("a missing device does not open");
    assert_eq!(
        error.to_string(),
        format!("no serial device {}: is the adapter plugged in?", folder.link())
    );
}

#[test]
fn settings_default_to_115200_8n1() {
    let settings: SerialSettings = toml::from_str("device = \"/dev/ttyUSB0\"").unwrap();
    assert_eq!(settings, SerialSettings::new("/dev/ttyUSB0"));
    assert_eq!(
        (
            settings.baud,
            settings.data_bits,
            settings.parity,
            settings.stop_bits
        ),
        (115_200, 8, Parity::None, 1)
    );
    assert_eq!(settings.flow_control, FlowControl::None);
    assert_eq!(settings.reconnect(), Duration::from_millis(200));

    let settings: SerialSettings = toml::from_str(
        "device = \"/dev/ttyS1\"\nbaud = 9600\ndata_bits = 7\nparity = \"even\"\nstop_bits = 2\n\
         flow_control = \"hardware\"\nreconnect_ms = 500\n",
    )
    .unwrap();
    assert_eq!(
        (
            settings.baud,
            settings.data_bits,
            settings.parity,
            settings.stop_bits
        ),
        (9600, 7, Parity::Even, 2)
    );
    assert_eq!(settings.flow_control, FlowControl::Hardware);
    assert_eq!(settings.validate(), vec![]);
}

#[test]
fn bad_settings_give_a_sentence_each() {
    let bad = SerialSettings {
        baud: 0,
        data_bits: 9,
        stop_bits: 3,
        reconnect_ms: 0,
        ..SerialSettings::new("ttyUSB0")
    };
    let problems = bad.validate();
    let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        ["device", "baud", "data_bits", "stop_bits", "reconnect_ms"]
    );
    let sentences: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expected = [
        "device ttyUSB0 is not an absolute path: write /dev/ttyUSB0 or its /dev/serial/by-id/ name",
        "baud 0 is not a serial speed: use the terminal's, 1 to 4000000, e.g. 115200",
        "data_bits 9 is not 5, 6, 7 or 8",
        "stop_bits 3 is not 1 or 2",
        "reconnect_ms 0 would retry without pause: use e.g. 200",
    ];
    assert_eq!(sentences, expected);

    // The console refuses them before touching the device.
    let recorder = Arc::new(Recorder::default());
    let error = SerialConsole::open(&bad, profile(), recorder)
        .err()
        .expect("bad settings do not open");
    assert_eq!(
        error.to_string(),
        format!(
            "the serial port ttyUSB0 is misconfigured: {}",
            expected.join("; ")
        )
    );

    let extreme = SerialSettings {
        baud: 4_000_001,
        reconnect_ms: 60_001,
        ..SerialSettings::new("")
    };
    let sentences: Vec<String> = extreme.validate().iter().map(ToString::to_string).collect();
    assert_eq!(
        sentences,
        [
            "device is empty: name the serial port, e.g. /dev/serial/by-id/usb-FTDI_…",
            "baud 4000001 is not a serial speed: use the terminal's, 1 to 4000000, e.g. 115200",
            "reconnect_ms 60001 is over a minute: the console would stay deaf long after the adapter \
             is back; use e.g. 200",
        ]
    );
}

#[test]
fn unknown_fields_and_values_are_refused_by_name() {
    let error = toml::from_str::<SerialSettings>("device = \"/dev/ttyUSB0\"\nspeed = 9600\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `speed`"), "{error}");
    let error = toml::from_str::<SerialSettings>("device = \"/dev/ttyUSB0\"\nparity = \"mark\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown variant `mark`"), "{error}");
    let error = toml::from_str::<SerialSettings>("device = \"/dev/ttyUSB0\"\nflow_control = \"rts\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown variant `rts`"), "{error}");
}

/// Writes a boot line and checks that it arrives, on its own, as line `nth` (from 0).
fn assert_a_boot_line_stands_alone(master: &mut TTYPort, recorder: &Recorder, nth: usize) {
    master.write_all(b"[    0.010] BOOT posterm\n").unwrap();
    let lines = recorder.wait_lines(nth + 1);
    assert_eq!(
        lines[nth].text, "[    0.010] BOOT posterm",
        "the next line stands alone"
    );
    assert_eq!(lines[nth].event.as_ref().map(|e| e.name.as_str()), Some("boot"));
}

#[test]
fn a_line_left_unfinished_is_ended_on_request_and_not_glued_to_the_next() {
    let folder = DeviceFolder::new("unfinished");
    let mut master = folder.plug();
    let (console, recorder) = open(&settings(&folder.link(), 200));
    master
        .write_all(b"[    1.000] READY\n[    1.100] TXN sent mti=02")
        .unwrap();
    recorder.wait_lines(1);
    // The terminal lost power there; by the time it is powered on the bytes have arrived.
    std::thread::sleep(Duration::from_millis(100));
    console.end_line().expect("the line is ended");
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        unfinished(&seen),
        ["[    1.100] TXN sent mti=02"],
        "the sink has the unfinished line once end_line returns"
    );

    assert_a_boot_line_stands_alone(&mut master, &recorder, 1);

    console.end_line().expect("nothing to end is no error");
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(unfinished(&seen).len(), 1, "a finished line is not ended again");
}

/// Waits until `path` exists.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn powering_the_terminal_on_again_ends_the_line_it_left_unfinished() {
    let folder = DeviceFolder::new("power");
    let recorder = Arc::new(Recorder::default());
    let console = Arc::new(SerialConsole::pty(profile(), recorder.clone()).expect("a PTY console"));
    // A terminal that, the first time, dies in the middle of a line, and then boots normally.
    let booted_once = folder.0.join("booted-once");
    let script = r#"if [ -e "$1" ]; then printf '[    0.010] BOOT posterm\n'; else printf '[    5.000] TXN sent mti=02'; : > "$1"; fi > "$2"; exec sleep 60"#;
    let power = Arc::new(SimPower::new(TerminalCommand {
        program: "sh".into(),
        args: [
            "-c",
            script,
            "terminal",
            &booted_once.display().to_string(),
            &console.device(),
        ]
        .map(str::to_string)
        .to_vec(),
        namespace: None,
        stderr: folder.0.join("terminal.stderr"),
    }));
    let actuators = Actuators::new(
        Capabilities {
            power: Some(power),
            console: Some(console.clone()),
            ..Capabilities::default()
        },
        Timeline::new(),
    );

    actuators.perform(&Action::PowerOn, "test").expect("power on");
    wait_for_file(&booted_once);
    std::thread::sleep(Duration::from_millis(100));
    actuators
        .perform(&Action::PowerOn, "test")
        .expect("power on while on");
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        unfinished(&seen),
        Vec::<String>::new(),
        "a terminal that is on may be in the middle of a line"
    );

    actuators.perform(&Action::PowerOff, "test").expect("power off");
    actuators
        .perform(&Action::PowerOn, "test")
        .expect("power on after the cut");
    let lines = recorder.wait_lines(1);
    assert_eq!(
        lines[0].text, "[    0.010] BOOT posterm",
        "the boot line stands alone"
    );
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(unfinished(&seen), ["[    5.000] TXN sent mti=02"]);
}

/// A sink that, like a trigger whose action powers the terminal on, ends the console's line from
/// the read path when it sees the line it waits for — just after the terminal's last bytes (the
/// half line it was writing when its power went) have arrived behind that line.
struct EndsTheLineOn {
    line: &'static str,
    console: std::sync::OnceLock<std::sync::Weak<SerialConsole>>,
    /// The terminal's side, and what it writes last.
    terminal: Mutex<(TTYPort, &'static [u8])>,
    ended: Mutex<Option<String>>,
    recorder: Arc<Recorder>,
}

impl LineSink for EndsTheLineOn {
    fn line(&self, line: &ConsoleLine) {
        if line.text == self.line {
            let mut terminal = self.terminal.lock().unwrap();
            let last_bytes = terminal.1;
            terminal.0.write_all(last_bytes).unwrap();
            std::thread::sleep(Duration::from_millis(100)); // through the PTY, waiting to be read
            let console = self.console.get().and_then(std::sync::Weak::upgrade).unwrap();
            let outcome = console.end_line().map_err(|e| e.to_string());
            *self.ended.lock().unwrap() = Some(format!("{outcome:?}"));
        }
        self.recorder.line(line);
    }

    fn unfinished(&self, t_ns: u64, text: &str) {
        self.recorder.unfinished(t_ns, text);
    }
}

#[test]
fn the_read_path_itself_can_end_the_line_without_waiting_on_itself() {
    let folder = DeviceFolder::new("self");
    let mut master = folder.plug();
    let recorder = Arc::new(Recorder::default());
    let sink = Arc::new(EndsTheLineOn {
        line: "[    1.000] power back",
        console: std::sync::OnceLock::new(),
        terminal: Mutex::new((master.try_clone_native().unwrap(), b"[    0.900] TXN sent mti=02")),
        ended: Mutex::new(None),
        recorder: recorder.clone(),
    });
    let console = Arc::new(
        SerialConsole::open(&settings(&folder.link(), 200), profile(), sink.clone())
            .expect("the console opens"),
    );
    let _ = sink.console.set(Arc::downgrade(&console));

    master.write_all(b"[    1.000] power back\n").unwrap();
    let seen = recorder.wait_until("the unfinished line", |s| !unfinished(s).is_empty());
    assert_eq!(
        unfinished(&seen),
        ["[    0.900] TXN sent mti=02"],
        "what arrived behind the line is read, and the half line ended"
    );
    assert_eq!(
        sink.ended.lock().unwrap().as_deref(),
        Some("Ok(())"),
        "end_line from the read path returns at once"
    );
    assert_a_boot_line_stands_alone(&mut master, &recorder, 1);
}

/// A sink that holds the last reference to its own console and lets go of it on a line, as the
/// read path does when a rig is dropped while a trigger's action runs on it.
#[derive(Default)]
struct LetsGoOfItsConsole {
    console: Mutex<Option<SerialConsole>>,
    dropped: Mutex<Option<bool>>,
    changed: Condvar,
}

impl LineSink for LetsGoOfItsConsole {
    fn line(&self, _line: &ConsoleLine) {
        let Some(console) = self.console.lock().unwrap().take() else {
            return;
        };
        let cleanly = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(console))).is_ok();
        *self.dropped.lock().unwrap() = Some(cleanly);
        self.changed.notify_all();
    }
}

#[test]
fn a_console_dropped_on_its_own_reading_thread_stops_without_waiting_for_itself() {
    let folder = DeviceFolder::new("own-thread");
    let mut master = folder.plug();
    let sink = Arc::new(LetsGoOfItsConsole::default());
    let console =
        SerialConsole::open(&settings(&folder.link(), 200), profile(), sink.clone()).expect("opens");
    *sink.console.lock().unwrap() = Some(console);
    master.write_all(b"[    1.000] READY\n").unwrap();
    let dropped = sink.dropped.lock().unwrap();
    let (dropped, _) = sink
        .changed
        .wait_timeout_while(dropped, WAIT, |d| d.is_none())
        .unwrap();
    assert_eq!(
        *dropped,
        Some(true),
        "dropping the console from its reader did not panic"
    );
}
