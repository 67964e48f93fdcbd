"""The plugin against a hardware rig: what only the simulated rig can honour is refused, never
silently ignored. (No hardware is needed: the refusals come before any device is opened.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import posrig

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rigs"
HARDWARE = str(FIXTURES / "pi-example.toml")


def run_pytest(tmp_path: Path, test_source: str, *options: str) -> subprocess.CompletedProcess:
    """Runs pytest on a test file of `test_source` against the example hardware rig."""
    test_file = tmp_path / "test_on_hardware.py"
    test_file.write_text(test_source)
    command = [
        sys.executable, "-m", "pytest", str(test_file), "-p", "no:cacheprovider", "-rs",
        "--rig", HARDWARE, "--results", str(tmp_path / "results"), *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_the_rig_configuration_says_whether_it_is_simulated():
    assert posrig.rig_is_simulated(str(FIXTURES / "sim.toml"))
    assert not posrig.rig_is_simulated(HARDWARE)


def test_simulator_options_on_a_hardware_rig_stop_the_run_with_the_reason(tmp_path):
    run = run_pytest(tmp_path, "def test_nothing():\n    pass\n", "--link", "proxy", "--terminal", "--defect x")
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's "usage error"
    assert f"--terminal --defect x and --link proxy: only the simulated rig takes these; {HARDWARE} is real hardware" in run.stderr


def test_a_test_that_sets_the_simulated_terminal_is_skipped_on_hardware_with_the_reason(tmp_path):
    source = (
        "def test_needs_a_setting(make_rig):\n"
        "    make_rig(settings=['policy.reversal_at_boot=false'], defects=['resend_on_timeout'])\n"
    )
    run = run_pytest(tmp_path, source)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout, run.stdout
    reason = (
        "needs the simulated terminal (--set policy.reversal_at_boot=false, --defect resend_on_timeout); "
        f"the rig {HARDWARE} is real hardware"
    )
    assert reason in run.stdout, run.stdout
