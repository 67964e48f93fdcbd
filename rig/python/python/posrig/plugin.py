"""The posrig pytest plugin (registered through the `pytest11` entry point).

Options: `--rig` (a rig configuration; default the simulated rig), `--results` (where run records
go), `--terminal` (extra arguments for the simulated terminal, e.g. "--defect reversal_after_send").
Fixtures: `rig` (a started rig per test, left safe afterwards), `terminal`, `host`, `cards`.
Markers: `@pytest.mark.needs("link")` skips, with the reason, a test the rig cannot run;
`@pytest.mark.scenario("P3")` names the domain.md §4 row a test covers.

Every test's records are written as it finishes: its timeline, console log and wire journal, and a
row of `summary.csv` (flushed at once, so a crash loses nothing already seen).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from . import Rig

SUMMARY_FIELDS = ["test", "scenario", "group", "outcome", "duration_s", "measurements", "violations", "unresolved"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("posrig", "posrig test rig")
    group.addoption("--rig", default="fixtures/rigs/sim.toml", help="rig configuration (default: the simulated rig)")
    group.addoption("--results", default="results", help="folder for the run records (default: results)")
    group.addoption("--terminal", default="", help="extra arguments for the simulated terminal, e.g. \"--defect reversal_after_send\"")
    group.addoption("--link", default=None, choices=["auto", "netns", "proxy"], help="override the rig's link backend")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(capability): skip unless the rig has this capability (power, card, link, impairment)")
    config.addinivalue_line("markers", "scenario(id): the domain.md §4 scenario the test covers")
    _make_programs_findable()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    records = Path(config.getoption("--results")) / run_id
    records.mkdir(parents=True, exist_ok=True)
    config.stash[_RECORDS] = Records(records, run_id)
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(records / "junit.xml")


def _make_programs_findable() -> None:
    """Lets the rig find the simulated terminal installed with this package, in the environment's
    bin folder, even when that folder is not on PATH."""
    if "POSRIG_BIN_DIR" in os.environ:
        return
    scripts = Path(sysconfig.get_path("scripts"))
    if (scripts / "posterm").exists():
        os.environ["POSRIG_BIN_DIR"] = str(scripts)
    elif (Path(sys.executable).parent / "posterm").exists():
        os.environ["POSRIG_BIN_DIR"] = str(Path(sys.executable).parent)


class Records:
    """The run's record folder: per-test records and the summary, written as tests finish."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.folder = folder
        self.run_id = run_id
        self.rows: List[Dict[str, Any]] = []
        self._summary = (folder / "summary.csv").open("w", newline="")
        self._writer = csv.DictWriter(self._summary, fieldnames=SUMMARY_FIELDS)
        self._writer.writeheader()
        self._summary.flush()

    def test_folder(self, nodeid: str) -> Path:
        folder = self.folder / "tests" / _safe_name(nodeid)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, row: Dict[str, Any]) -> None:
        self.rows.append(row)
        self._writer.writerow(row)
        self._summary.flush()

    def close(self) -> None:
        self._summary.close()


_RECORDS = pytest.StashKey[Records]()
_RIG = pytest.StashKey[Rig]()
_REPORTS = pytest.StashKey[Dict[str, pytest.TestReport]]()


def _safe_name(nodeid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid.replace("::", "--"))[-120:]


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """A rig started for this test and left in the safe state after it."""
    config = request.config
    terminal_args = shlex.split(config.getoption("--terminal"))
    started = Rig(config.getoption("--rig"), link=config.getoption("--link"), terminal_args=terminal_args)
    for marker in request.node.iter_markers("needs"):
        for capability in marker.args:
            if not started.has(capability):
                started.close()
                pytest.skip(f"the rig {config.getoption('--rig')} has no {capability}")
    request.node.stash[_RIG] = started
    try:
        yield started
    finally:
        _write_test_records(request.node, started)
        started.close()


@pytest.fixture
def terminal(rig: Rig):
    """The terminal under test."""
    return rig.terminal


@pytest.fixture
def host(rig: Rig):
    """The acquirer host."""
    return rig.host


@pytest.fixture
def cards(request: pytest.FixtureRequest) -> List[str]:
    """The names of the card profiles the rig's card feeder can insert."""
    folder = Path(request.config.getoption("--rig")).parent / ".." / "cards"
    return sorted(p.stem for p in folder.glob("*.toml"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _write_test_records(item: pytest.Item, rig: Rig) -> None:
    folder = item.config.stash[_RECORDS].test_folder(item.nodeid)
    timeline = rig.timeline()
    with (folder / "timeline.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["t_ns", "t_ms", "source", "name", "detail", "fields"])
        start = timeline[0]["t_ns"] if timeline else 0
        for e in timeline:
            fields = " ".join(f"{k}={v}" for k, v in sorted(e["fields"].items()))
            writer.writerow([e["t_ns"], f"{(e['t_ns'] - start) / 1e6:.3f}", e["source"], e["name"], e["detail"], fields])
    (folder / "console.log").write_text("\n".join(rig.terminal.console()) + "\n")
    with (folder / "journal.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["seq", "t_ns", "connection", "direction", "mti", "stan", "rc", "note", "raw"])
        for e in rig.host.journal():
            writer.writerow([e["seq"], e["t_ns"], e["connection"], e["direction"], e["mti"] or "", e["stan"] or "", e["fields"].get("39", ""), e["note"], e["raw"]])
    (folder / "timeline.json").write_text(json.dumps(timeline))
    try:
        verdict = rig.check()
        (folder / "verdict.txt").write_text(str(verdict) + "\n")
        item.stash[_VERDICT] = verdict
    except Exception as error:  # the terminal may be powered off: the records still get written
        (folder / "verdict.txt").write_text(f"no verdict: {error}\n")
    item.stash[_MEASUREMENTS] = list(rig.measurements)


_VERDICT = pytest.StashKey[Any]()
_MEASUREMENTS = pytest.StashKey[list]()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Optional[pytest.Item]) -> None:
    reports = item.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    skipped = any(r.skipped for r in reports.values())
    outcome = "failed" if failed else "skipped" if skipped else "passed"
    scenario = next((m.args[0] for m in item.iter_markers("scenario") if m.args), "")
    verdict = item.stash.get(_VERDICT, None)
    measurements = item.stash.get(_MEASUREMENTS, [])
    duration = sum(r.duration for r in reports.values())
    item.config.stash[_RECORDS].add(
        {
            "test": item.nodeid,
            "scenario": scenario,
            "group": Path(str(item.fspath)).stem.replace("test_", ""),
            "outcome": outcome,
            "duration_s": f"{duration:.3f}",
            "measurements": "; ".join(f"{m.name}={m.value:g} {m.unit}" + ("" if m.passed else " (out of limits)") for m in measurements),
            "violations": "; ".join(f"{v['invariant']}@{v['stan']}" for v in (verdict.violations if verdict else [])),
            "unresolved": "; ".join(u["stan"] for u in (verdict.unresolved if verdict else [])),
        }
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    records = session.config.stash.get(_RECORDS, None)
    if records is None:
        return
    records.close()
    _append_history(records, exitstatus)


def _append_history(records: Records, exitstatus: int) -> None:
    """One row per run in results/history.csv, for the nightly trend."""
    history = records.folder.parent / "history.csv"
    new = not history.exists()
    counts = {k: sum(1 for r in records.rows if r["outcome"] == k) for k in ("passed", "failed", "skipped")}
    duration = sum(float(r["duration_s"]) for r in records.rows)
    with history.open("a", newline="") as out:
        writer = csv.writer(out)
        if new:
            writer.writerow(["run_id", "passed", "failed", "skipped", "duration_s", "exit_status"])
        writer.writerow([records.run_id, counts["passed"], counts["failed"], counts["skipped"], f"{duration:.1f}", exitstatus])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, None)
    if records is not None:
        terminalreporter.write_line(f"posrig records: {records.folder}")
