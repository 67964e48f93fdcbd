//! `cargo xtask nightly` runs the nightly suite against the simulated rig and leaves its records
//! under `results/`; `cargo xtask test` runs every test, Rust and Python. Both build what they
//! need first (the workspace, a venv, the posrig wheel), so they work from a fresh clone with Rust
//! and Python 3. `cargo xtask pi` cross-builds the workspace for a Raspberry Pi (64-bit OS).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let outcome = match task.as_str() {
        "nightly" => nightly(),
        "test" => test(),
        "pi" => pi(),
        _ => Err("usage: cargo xtask nightly | cargo xtask test | cargo xtask pi [--debug]".to_string()),
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
    step("building the workspace (acqhost, posterm, rigctl, iso8583, simdemo)");
    run(cargo().args(["build", "--workspace", "--bins"]))
}

/// The main job: the nightly suite against the simulated rig, its records under `results/`.
/// The Raspberry Pi's target (Raspberry Pi OS 64-bit, Pi 3, 4 and 5).
const PI_TARGET: &str = "aarch64-unknown-linux-gnu";

/// Cross-builds every crate for the Pi with Debian's aarch64 linker, release unless `--debug`
/// follows (CI's quicker check); the Python extension is built as an extension module (no
/// libpython to link against here).
fn pi() -> Result<(), String> {
    let profile = if std::env::args().nth(2).as_deref() == Some("--debug") {
        "debug"
    } else {
        "release"
    };
    step(&format!(
        "cross-building the workspace for the Raspberry Pi ({PI_TARGET})"
    ));
    if Command::new("aarch64-linux-gnu-gcc")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("no aarch64 linker: apt-get install gcc-aarch64-linux-gnu".into());
    }
    let mut build = cargo();
    build.args(["build", "--workspace", "--target", PI_TARGET]);
    if profile == "release" {
        build.arg("--release");
    }
    run(build
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env("PYO3_BUILD_EXTENSION_MODULE", "1"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    println!(
        "\nbinaries for the Pi: {} (rigctl, acqhost, posterm, iso8583)",
        target.join(PI_TARGET).join(profile).display()
    );
    Ok(())
}

fn nightly() -> Result<(), String> {
    build()?;
    let python = install_package()?;
    step("nightly suite against the simulated rig (fixtures/rigs/sim.toml)");
    run(Command::new(python).args([
        "-m",
        "pytest",
        "pytests",
        "-p",
        "no:cacheprovider",
        "--results",
        "results",
    ]))
}

fn test() -> Result<(), String> {
    build()?;
    step("Rust tests (unit, property, host knobs, lab scenarios, rig, rigctl)");
    run(cargo().args(["test", "--workspace"]))?;
    let python = install_package()?;
    step("Python tests (codec cross-check, the suites, suite sensitivity)");
    run(Command::new(python).args([
        "-m",
        "pytest",
        "pytests",
        "-q",
        "-p",
        "no:cacheprovider",
        "--results",
        "results",
    ]))
}

/// Builds the posrig wheel (with the simulated terminal inside) and installs it into `.venv`;
/// returns the venv's interpreter.
fn install_package() -> Result<PathBuf, String> {
    let python = venv()?;
    step("building and installing the posrig wheel");
    let scripts = root().join("rig/python/data/scripts");
    std::fs::create_dir_all(&scripts).map_err(|e| format!("{}: {e}", scripts.display()))?;
    for program in ["posterm", "iso8583"] {
        std::fs::copy(bin_dir().join(program), scripts.join(program))
            .map_err(|e| format!("copying {program} into the wheel: {e}"))?;
    }
    let wheels = root().join("target/wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    run(Command::new(&python)
        .args([
            "-m",
            "maturin",
            "build",
            "--quiet",
            "--manifest-path",
            "rig/python/Cargo.toml",
            "--out",
        ])
        .arg(&wheels))?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("{}: {e}", wheels.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("maturin built no wheel")?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(&wheel))?;
    Ok(python)
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
