"""Suite sensitivity: every seeded defect of the simulated terminal must make at least one named
test of the suites fail. A defect no test catches is a missing test, not a passing run.

Each defect gets its own pytest run of the suites against a terminal seeded with it, stopping at
the first failure (one named failing test is the proof); the table defect → failing test is
printed and written to this test's records as sensitivity.csv.
"""

import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

SUITES = Path(__file__).parent
#: Suites that judge the terminal: not the codec cross-check, the plugin's own tests or this test,
#: and not the sweeps, which repeat the scenario tests at many offsets and would only make each run
#: longer.
JUDGING = sorted(
    str(p)
    for p in SUITES.glob("test_*.py")
    if p.name not in ("test_sensitivity.py", "test_codec_crosscheck.py", "test_sweeps.py", "test_plugin.py")
)


def defects() -> list:
    posterm = Path(os.environ.get("POSRIG_BIN_DIR", "")) / "posterm"
    program = str(posterm) if posterm.exists() else "posterm"
    listed = subprocess.run([program, "--list-defects"], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def failing_tests(junit: Path) -> list:
    """Names of the tests that failed or errored in a JUnit report."""
    failed = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = (case.get("classname") or "").rsplit(".", 1)[-1]
            failed.append(f"{module}.py::{case.get('name')}")
    return failed


def run_suites_against(defect: str, rig: str, workdir: Path) -> list:
    junit = workdir / f"{defect}.xml"
    command = [
        sys.executable, "-m", "pytest", *JUDGING,
        "-p", "no:cacheprovider", "-q", "--maxfail=1",
        "--rig", rig, "--terminal", f"--defect {defect}",
        "--results", str(workdir / "runs"), f"--junitxml={junit}",
    ]
    subprocess.run(command, capture_output=True, text=True, timeout=900)
    return failing_tests(junit) if junit.exists() else []


def test_every_seeded_defect_makes_a_named_test_fail(request, records, capsys):
    rig = request.config.getoption("--rig")
    table = {defect: run_suites_against(defect, rig, records) for defect in defects()}
    with (records / "sensitivity.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["defect", "failing test"])
        for defect, failed in table.items():
            writer.writerow([defect, failed[0] if failed else "NOT CAUGHT"])
    width = max(len(d) for d in table)
    with capsys.disabled():
        print("\nsuite sensitivity: defect → first failing test")
        for defect, failed in table.items():
            print(f"  {defect:<{width}}  {failed[0] if failed else 'NOT CAUGHT: a test is missing'}")
    uncaught = [d for d, failed in table.items() if not failed]
    assert not uncaught, f"no test catches {uncaught}"
