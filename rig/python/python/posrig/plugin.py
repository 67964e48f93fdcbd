"""The posrig pytest plugin (registered through the `pytest11` entry point).

Options: `--rig` (a rig configuration; default the simulated rig), `--results` (where run records
go), `--terminal` (extra arguments for the simulated terminal, e.g. "--defect reversal_after_send").
`--terminal` and `--link` apply to the simulated rig only: with a hardware rig they stop the run.
Fixtures: `rig` (a started rig per test, left safe afterwards), `make_rig` (more rigs, with extra
terminal settings or defects; on a hardware rig such a test is skipped with the reason),
`terminal`, `host`, `cards`, `records` (the test's own folder in the run records).
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
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

from . import Rig, _native, rig_is_simulated

SUMMARY_FIELDS = ["test", "scenario", "group", "outcome", "duration_s", "measurements", "violations", "unresolved"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("posrig", "posrig test rig")
    group.addoption("--rig", default="fixtures/rigs/sim.toml", help="rig configuration (default: the simulated rig)")
    group.addoption("--results", default="results", help="folder for the run records (default: results)")
    group.addoption("--terminal", default="", help="extra arguments for the simulated terminal, e.g. \"--defect reversal_after_send\"")
    group.addoption("--link", default=None, choices=["auto", "netns", "proxy"], help="override the rig's link backend")
    group.addoption("--swimlanes", default="failed", choices=["failed", "all"], help="draw the timeline swimlane of failing tests (default) or of every test")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(capability): skip unless the rig has this capability (power, card, link, impairment)")
    config.addinivalue_line("markers", "scenario(id): the domain.md §4 scenario the test covers")
    _make_programs_findable()
    _refuse_simulator_options_on_hardware(config)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    records = Path(config.getoption("--results")) / run_id
    records.mkdir(parents=True, exist_ok=True)
    config.stash[_RECORDS] = Records(records, run_id)
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(records / "junit.xml")


def _refuse_simulator_options_on_hardware(config: pytest.Config) -> None:
    """`--terminal` and `--link` choose how the simulated rig runs; on a hardware rig they would
    be ignored, so the run stops at once with the reason instead."""
    given = [f"{name} {config.getoption(name)}" for name in ("--terminal", "--link") if config.getoption(name) not in (None, "", "auto")]
    if not given:
        return
    rig = config.getoption("--rig")
    try:
        simulated = rig_is_simulated(rig)
    except _native.RigError:
        return  # the rig fixture reports what is wrong with the configuration
    if not simulated:
        raise pytest.UsageError(f"{' and '.join(given)}: only the simulated rig takes these; {rig} is real hardware")


def _make_programs_findable() -> None:
    """Lets the rig (and the suites) find the programs installed with this package — the
    simulated terminal and the codec's command line — in the environment's bin folder, even when
    that folder is not on PATH."""
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
        #: Per test: its folder, plots and sweep points, for the index.
        self.tests: List[Dict[str, Any]] = []
        #: Trigger offsets (ms from event to action) of every firing, for the histogram.
        self.trigger_offsets_ms: List[float] = []
        #: Reversal latencies (ms) the tests measured, for the histogram.
        self.reversal_latencies_ms: List[float] = []
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
def make_rig(request: pytest.FixtureRequest) -> Iterator[Callable[..., Rig]]:
    """Starts rigs for this test whose simulated terminal runs with extra `settings` (posterm
    `--set` values) or `defects`, on top of `--terminal`: `make_rig(settings=["policy.x=1"])`.
    Each is skipped like `rig` when it lacks a capability the test `needs`, recorded, and left in
    the safe state after the test."""
    config = request.config
    started: List[Rig] = []

    def start(settings: Sequence[str] = (), defects: Sequence[str] = ()) -> Rig:
        asked = [*(f"--set {s}" for s in settings), *(f"--defect {d}" for d in defects)]
        if asked and not rig_is_simulated(config.getoption("--rig")):
            pytest.skip(f"needs the simulated terminal ({', '.join(asked)}); the rig {config.getoption('--rig')} is real hardware")
        new = Rig(
            config.getoption("--rig"),
            link=config.getoption("--link"),
            settings=settings,
            defects=defects,
            terminal_args=shlex.split(config.getoption("--terminal")),
        )
        missing = [c for m in request.node.iter_markers("needs") for c in m.args if not new.has(c)]
        if missing:
            new.close()
            pytest.skip(f"the rig {config.getoption('--rig')} has no {', '.join(missing)}")
        started.append(new)
        return new

    yield start
    for each in started:
        _write_test_records(request.node, each)
        each.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """A rig started for this test and left in the safe state after it."""
    return make_rig()


@pytest.fixture
def records(request: pytest.FixtureRequest) -> Path:
    """This test's folder in the run records, for files of its own."""
    return request.config.stash[_RECORDS].test_folder(request.node.nodeid)


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
    item.stash[_TIMELINE] = timeline
    records = item.config.stash[_RECORDS]
    try:
        records.trigger_offsets_ms += [f.offset_ms for f in rig.firings() if f.error is None and f.started_ns]
    except Exception:  # a rig that cannot answer any more still gets its records
        pass
    records.reversal_latencies_ms += [m.value for m in rig.measurements if "reversal latency" in m.name.lower()]


_VERDICT = pytest.StashKey[Any]()
_TIMELINE = pytest.StashKey[list]()
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
    records = item.config.stash[_RECORDS]
    folder = records.test_folder(item.nodeid)
    plots = []
    timeline = item.stash.get(_TIMELINE, None)
    if timeline and (outcome == "failed" or item.config.getoption("--swimlanes") == "all"):
        png, _ = _native.plot_swimlane(json.dumps(timeline), f"{item.name}: {outcome}", folder / "swimlane")
        plots.append(Path(png))
    for name, value in item.user_properties:
        if name == "sweep":
            points = json.loads(value)
            tuples = [(float(p["offset_ms"]), p["outcome"], p.get("detail", "")) for p in points]
            png, _ = _native.plot_sweep(tuples, f"{item.name}: outcome against offset", "fault offset (ms)", folder / "sweep")
            plots.append(Path(png))
    records.tests.append({"nodeid": item.nodeid, "outcome": outcome, "scenario": scenario, "folder": folder, "plots": plots})
    records.add(
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
    _draw_run_plots(records)
    _write_index(records)


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
        terminalreporter.write_line(f"posrig index:   {records.folder / 'index.html'}")


def _draw_run_plots(records: Records) -> None:
    """The run's plots: summary by scenario group, latency and offset histograms, nightly trend."""
    groups: Dict[str, List[int]] = {}
    for row in records.rows:
        counts = groups.setdefault(row["group"], [0, 0, 0, 0])
        # Each test once: a pass that leaves a reversal unresolved is reported as unresolved.
        index = {"passed": 0, "failed": 1, "skipped": 3}.get(row["outcome"], 0)
        if index == 0 and row["unresolved"]:
            index = 2
        counts[index] += 1
    _native.plot_summary([(g, *c) for g, c in sorted(groups.items())], records.folder / "summary")
    _native.plot_histogram(records.reversal_latencies_ms, "ms", "Reversal latency (timeout to 0410 accepted)", records.folder / "reversal-latency")
    _native.plot_histogram(records.trigger_offsets_ms, "ms", "Trigger offset (event to action start)", records.folder / "trigger-offset")
    history = records.folder.parent / "history.csv"
    with history.open() as source:
        runs = [(r["run_id"], int(r["passed"]), int(r["failed"]), 0, float(r["duration_s"])) for r in csv.DictReader(source)]
    _native.plot_trend(runs, records.folder.parent / "trend")


def _write_index(records: Records) -> None:
    """index.html: the run at a glance, every record linked, openable from disk."""
    def link(path: Path, text: str) -> str:
        return f'<a href="{os.path.relpath(path, records.folder)}">{text}</a>'

    rows = []
    for test in records.tests:
        folder = test["folder"]
        files = [link(folder / name, name) for name in ("timeline.csv", "console.log", "journal.csv", "verdict.txt")]
        files += [link(p, p.name) for p in test["plots"]]
        rows.append(
            f"<tr class='{test['outcome']}'><td>{test['scenario']}</td><td>{test['nodeid']}</td>"
            f"<td>{test['outcome']}</td><td>{' · '.join(files)}</td></tr>"
        )
    counts = {k: sum(1 for r in records.rows if r["outcome"] == k) for k in ("passed", "failed", "skipped")}
    images = "".join(
        f'<figure><a href="{name}.svg"><img src="{name}.png" width="600"></a><figcaption>{caption}</figcaption></figure>'
        for name, caption in [
            ("summary", "Outcomes by scenario group"),
            ("reversal-latency", "Reversal latency"),
            ("trigger-offset", "Trigger offset"),
            ("../trend", "Nightly trend"),
        ]
    )
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>posrig run {records.run_id}</title>
<style>body{{font-family:sans-serif;margin:2em}} td{{padding:2px 8px;border-bottom:1px solid #ddd}}
tr.failed td{{background:#fde2e1}} tr.skipped td{{color:#888}} figure{{display:inline-block;margin:8px}}</style></head><body>
<h1>posrig run {records.run_id}</h1>
<p>{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped ·
<a href="summary.csv">summary.csv</a> · <a href="junit.xml">junit.xml</a> · <a href="../history.csv">history.csv</a></p>
{images}
<table><tr><th>scenario</th><th>test</th><th>outcome</th><th>records</th></tr>
{''.join(rows)}
</table></body></html>
"""
    (records.folder / "index.html").write_text(html)
