//! `rigctl` as a lab engineer uses it: start a rig, drive it from other commands, stop it with
//! Ctrl-C, and kill it outright while it holds the link down — the next start must restore it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RIGCTL: &str = env!("CARGO_BIN_EXE_rigctl");

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A copy of the default rig configuration under a name of its own (so tests running side by
/// side get their own socket and namespace), with absolute paths.
fn config(name: &str) -> PathBuf {
    let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures"))
        .canonicalize()
        .unwrap();
    let text = std::fs::read_to_string(fixtures.join("rigs/sim.toml"))
        .unwrap()
        .replace("name = \"sim\"", &format!("name = \"{name}\""))
        .replace("\"../", &format!("\"{}/", fixtures.display()));
    let path = std::env::temp_dir().join(format!("rigctl-test-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `rigctl up`; killed if the test ends without stopping it.
struct Up {
    child: Child,
    config: PathBuf,
}

impl Up {
    fn start(config: &Path, extra: &[&str]) -> Up {
        let mut child = Command::new(RIGCTL)
            .arg("--config")
            .arg(config)
            .arg("up")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rigctl up starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(first.contains("running"), "rigctl up said {first:?}");
        // Keep reading what it says, as a terminal window would.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Up {
            child,
            config: config.to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(RIGCTL)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "rigctl {args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "rigctl did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of(up: &Up) -> serde_json::Value {
    serde_json::from_str(&up.ok(&["status"])).expect("status is JSON")
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rigctl_drives_power_card_link_console_and_host_then_stops_safely_on_ctrl_c() {
    let name = format!("ctl{}", std::process::id() % 100_000);
    let config = config(&name);
    let mut up = Up::start(&config, &["--link", "proxy"]);
    let status = status_of(&up);
    assert_eq!(
        (status["power"].as_str(), status["link"].as_str()),
        (Some("on"), Some("up"))
    );
    assert_eq!(status["card"], "none");

    up.ok(&["card", "insert", "unionpay-debit"]);
    assert_eq!(status_of(&up)["card"], "unionpay-debit");
    up.ok(&["console", "send", "sale 4200"]);
    wait_until("the sale is approved", || {
        up.ok(&["console", "tail"]).contains("APPROVED")
    });
    let journal = up.ok(&["host", "journal"]);
    assert!(journal.contains("0200") && journal.contains("0210"), "{journal}");

    up.ok(&["link", "down"]);
    assert_eq!(status_of(&up)["link"], "down");
    up.ok(&["link", "up"]);
    up.ok(&["power", "off"]);
    assert_eq!(status_of(&up)["power"], "off");
    up.ok(&["power", "cycle", "--off-ms", "100"]);
    assert_eq!(status_of(&up)["power"], "on");

    let refused = up.run(&["card", "insert", "no-such-card"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no card \"no-such-card\""));

    up.ok(&["link", "down"]);
    up.signal(libc::SIGINT);
    assert!(up.wait().success(), "Ctrl-C is a clean stop");
    let gone = Command::new(RIGCTL)
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the socket is gone with the rig");
    std::fs::remove_file(config).unwrap();
}

#[test]
fn after_rigctl_is_killed_holding_the_link_down_the_next_start_restores_it() {
    if !root() {
        eprintln!("skipped: the netns link needs root (network namespaces); CI runs as root");
        return;
    }
    let name = format!("k{}", std::process::id() % 100_000);
    let config = config(&name);
    let interface = format!("/sys/class/net/prg{name}h/operstate");
    let mut up = Up::start(&config, &["--link", "netns"]);
    up.ok(&["link", "down"]);
    assert_eq!(std::fs::read_to_string(&interface).unwrap().trim(), "down");
    up.signal(libc::SIGKILL);
    up.wait();
    assert_eq!(
        std::fs::read_to_string(&interface).unwrap().trim(),
        "down",
        "a killed rig leaves the kernel's link down"
    );

    let mut again = Up::start(&config, &["--link", "netns"]);
    assert_eq!(status_of(&again)["link"], "up", "the next start restored it");
    again.signal(libc::SIGTERM);
    assert!(again.wait().success());
    assert!(!Path::new(&interface).exists(), "a clean stop removes the veth");
    std::fs::remove_file(config).unwrap();
}

#[test]
fn rigctl_check_validates_a_configuration_and_names_missing_devices() {
    let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/rigs"));
    let check = |config: &Path| {
        Command::new(RIGCTL)
            .args(["--config", config.to_str().unwrap(), "check"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let sim = check(&fixtures.join("sim.toml"));
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    assert!(String::from_utf8_lossy(&sim.stdout).contains("valid"));
    // This machine has no FTDI adapter and no eth1: the example is valid, its devices are not here.
    let pi = check(&fixtures.join("pi-example.toml"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&pi.stdout),
        String::from_utf8_lossy(&pi.stderr),
    );
    assert!(!pi.status.success());
    assert!(
        stdout.contains("serial console") && stdout.contains("MISSING"),
        "{stdout}"
    );
    assert!(stderr.contains("console.device: no serial device"), "{stderr}");
    // A mistake in the file is reported before any device is looked for.
    let text = std::fs::read_to_string(fixtures.join("pi-example.toml")).unwrap();
    let broken = std::env::temp_dir().join(format!("rigctl-check-{}.toml", std::process::id()));
    let text = text
        .replace("\"../", &format!("\"{}/../", fixtures.display()))
        .replacen("pin = 17", "pin = 40", 1);
    std::fs::write(&broken, text).unwrap();
    let bad = check(&broken);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("power.pin") && stderr.contains("GPIO 40"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(broken);
}
