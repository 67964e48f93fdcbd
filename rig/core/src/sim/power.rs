//! Power of the simulated terminal: "on" starts its process, "off" kills it with SIGKILL — no
//! warning, no chance to flush, like a relay opening on the DC input.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use crate::capability::{PowerState, PowerSwitch};
use crate::error::{Result, RigError};

/// How to start the simulated terminal: a program and its arguments, placeholders filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalCommand {
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Network namespace to start it in (`/run/netns/NAME`), when the link is a veth.
    pub namespace: Option<PathBuf>,
    /// File that collects its standard error.
    pub stderr: PathBuf,
}

/// The simulated terminal's power: supervision of its process.
///
/// The process is started from a thread of the switch's own that lives as long as the switch:
/// the kernel's parent-death signal, which makes the terminal die with the rig, fires when the
/// *thread* that forked it ends, so it must not be whichever short-lived thread called `on`.
pub struct SimPower {
    child: Mutex<Option<Child>>,
    spawner: Mutex<Option<mpsc::Sender<mpsc::Sender<Result<Child>>>>>,
    spawner_thread: Option<JoinHandle<()>>,
}

impl SimPower {
    /// A switch for the terminal started by `command`; it starts off.
    pub fn new(command: TerminalCommand) -> SimPower {
        let (spawner, requests) = mpsc::channel::<mpsc::Sender<Result<Child>>>();
        let spawner_thread = std::thread::Builder::new()
            .name("terminal power".into())
            .spawn(move || {
                for reply in requests {
                    let _ = reply.send(spawn(&command));
                }
            })
            .ok();
        SimPower {
            child: Mutex::new(None),
            spawner: Mutex::new(Some(spawner)),
            spawner_thread,
        }
    }

    /// Has the supervisor thread start the terminal.
    fn spawn(&self) -> Result<Child> {
        let gone = || RigError::actuator("power (sim)", "on", "the process supervisor thread is gone");
        let (reply, answer) = mpsc::channel();
        let spawner = self.spawner.lock().expect("spawner lock");
        spawner
            .as_ref()
            .ok_or_else(gone)?
            .send(reply)
            .map_err(|_| gone())?;
        drop(spawner);
        answer.recv().map_err(|_| gone())?
    }
}

/// Starts the terminal: it dies with the rig, and enters the link's network namespace if any.
fn spawn(c: &TerminalCommand) -> Result<Child> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&c.stderr)
        .map_err(|e| RigError::io(format!("opening {}", c.stderr.display()), e))?;
    let namespace = match &c.namespace {
        Some(path) => Some(
            std::fs::File::open(path)
                .map_err(|e| RigError::io(format!("opening the network namespace {}", path.display()), e))?,
        ),
        None => None,
    };
    let mut command = Command::new(&c.program);
    command
        .args(&c.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls (prctl, setns) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // The terminal dies with the rig, whatever kills the rig.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(namespace) = &namespace {
                use std::os::fd::AsRawFd;
                if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        RigError::actuator(
            "power (sim)",
            "on",
            format!("cannot start {}: {e}", c.program.display()),
        )
    })
}

impl PowerSwitch for SimPower {
    fn on(&self) -> Result<()> {
        let mut child = self.child.lock().expect("power lock");
        let running = child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !running {
            *child = Some(self.spawn()?);
        }
        Ok(())
    }

    fn off(&self) -> Result<()> {
        let mut child = self.child.lock().expect("power lock");
        if let Some(mut process) = child.take() {
            // SIGKILL: the process gets no chance to flush anything.
            let _ = process.kill();
            process.wait().map_err(|e| {
                RigError::actuator("power (sim)", "off", format!("cannot reap the terminal: {e}"))
            })?;
        }
        Ok(())
    }

    fn state(&self) -> Result<PowerState> {
        let mut child = self.child.lock().expect("power lock");
        let running = child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        Ok(if running { PowerState::On } else { PowerState::Off })
    }
}

impl Drop for SimPower {
    fn drop(&mut self) {
        let _ = self.off();
        self.spawner.lock().expect("spawner lock").take();
        if let Some(thread) = self.spawner_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Finds a program of the workspace: in `POSRIG_BIN_DIR`, next to the running executable (or its
/// parent when that is a `deps` folder of a test), else by name on the PATH.
pub fn locate_program(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("POSRIG_BIN_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push(dir.to_path_buf());
        if dir.ends_with("deps") {
            candidates.extend(dir.parent().map(Path::to_path_buf));
        }
    }
    candidates
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
