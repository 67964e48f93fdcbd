//! `cargo xtask nightly` runs the main job against the simulated rig and leaves its records under
//! `results/`; `cargo xtask test` runs every test, Rust and Python. Both build what they need
//! first, so they work from a fresh clone with Rust and Python 3.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let outcome = match task.as_str() {
        "nightly" => nightly(),
        "test" => test(),
        _ => Err("usage: cargo xtask nightly | cargo xtask test".to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    target.join("debug")
}

fn step(title: &str) {
    println!("\n==> {title}");
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .current_dir(root())
        .env("POSRIG_BIN_DIR", bin_dir())
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn build() -> Result<(), String> {
    step("building the workspace (acqhost, posterm, iso8583, simdemo)");
    run(cargo().args(["build", "--workspace", "--bins"]))
}

/// The main job. At this stage: the demo of the simulated lab (a sale, a lost reply and its
/// reversal), with its records under `results/`.
fn nightly() -> Result<(), String> {
    build()?;
    step("running the simulated lab");
    run(Command::new(bin_dir().join("simdemo"))
        .arg("--results")
        .arg(root().join("results")))
}

fn test() -> Result<(), String> {
    build()?;
    step("Rust tests (unit, property, host knobs, lab scenarios)");
    run(cargo().args(["test", "--workspace"]))?;
    let python = venv()?;
    step("Python tests (pyiso8583 cross-check)");
    run(Command::new(python).args(["-m", "pytest", "pytests", "-q"]))
}

/// Creates `.venv` with the pytest requirements (once) and returns its interpreter.
fn venv() -> Result<PathBuf, String> {
    let venv = root().join(".venv");
    let python = venv.join("bin/python");
    let requirements = root().join("pytests/requirements.txt");
    let stamp = venv.join(".requirements");
    let wanted =
        std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    step("setting up the Python venv (.venv) for the pytest suites");
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--upgrade", "pip"]))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}
