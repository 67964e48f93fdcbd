"""posrig: drive a POS card terminal on a test rig from Python.

Python describes, Rust acts: a test says what to do and when ("cut the power 20 ms after the host
receives the 0200"), the rig controller does it without Python in the loop, the timeline records
everything on one clock, and the oracle judges the run against the invariants of domain.md §5.

    with Rig("fixtures/rigs/sim.toml") as rig:
        rig.card.insert("unionpay-debit")
        rig.host.drop_reply("sale", times=1)
        outcome = rig.terminal.sale(12345)
        assert outcome.reversal == "done"
        assert rig.check().passed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ._native import NativeRig, RigError, rig_is_simulated

__all__ = [
    "Event",
    "Firing",
    "Host",
    "Measurement",
    "Outcome",
    "Rig",
    "RigError",
    "Terminal",
    "Verdict",
    "When",
    "rig_is_simulated",
]

#: Events that end a sale, a void or a settlement on the terminal.
ENDINGS = ("approved", "declined", "terminated", "refused", "voided", "settled", "settle_failed")
#: Events that end a reversal's story, for now or for good.
REVERSAL_STATES = {
    "reversal_pending": "pending",
    "reversal_rejected": "pending",
    "reversal_unreachable": "pending",
    "reversal_done": "done",
    "reversal_failed": "failed",
}


@dataclass(frozen=True)
class Event:
    """A canonical terminal event (fixtures/terminals/README.md) with its fields."""

    name: str
    fields: Dict[str, str]
    t_ns: int = 0
    line: str = ""

    def __getitem__(self, key: str) -> str:
        return self.fields.get(key, "")

    @classmethod
    def _of(cls, data: Dict[str, Any]) -> "Event":
        return cls(data["name"], dict(data.get("fields", {})), int(data.get("t_ns", 0)), data.get("line", ""))


@dataclass
class Outcome:
    """What one terminal command (sale, void, settlement) came to."""

    command: str
    #: The STAN the terminal took for it, if it got that far.
    stan: Optional[str]
    #: Field 39 of the host's reply the terminal accepted, if any.
    response_code: Optional[str]
    #: The event that ended it: approved, declined, terminated, refused, voided, settled, or
    #: "no_reply" when the terminal gave up waiting and reversed.
    ended: str
    #: The printed receipt, if one was printed.
    receipt: Optional[Event]
    #: What became of a reversal it caused: None, "pending", "done" or "failed".
    reversal: Optional[str]
    #: Every event of the command, in order.
    events: List[Event]
    #: The terminal's status right after the command.
    status: Event

    @property
    def approved(self) -> bool:
        """True when the terminal committed an approval."""
        return self.ended in ("approved", "voided")

    @property
    def names(self) -> List[str]:
        """The names of the command's events, in order."""
        return [e.name for e in self.events]

    def first(self, name: str) -> Optional[Event]:
        """The command's first event called `name`."""
        return next((e for e in self.events if e.name == name), None)


@dataclass(frozen=True)
class Firing:
    """One firing of a trigger: when its event happened, when the action started and completed."""

    trigger: int
    matched: str
    event_ns: int
    started_ns: int
    done_ns: int
    undone_ns: Optional[int]
    error: Optional[str]

    @property
    def offset_ms(self) -> float:
        """Milliseconds from the event to the start of the action."""
        return (self.started_ns - self.event_ns) / 1e6

    @property
    def latency_ms(self) -> float:
        """Milliseconds from the event to the completion of the action."""
        return (self.done_ns - self.event_ns) / 1e6


@dataclass
class Verdict:
    """The oracle's judgement: invariants broken, and reversals left unresolved."""

    violations: List[Dict[str, Any]]
    unresolved: List[Dict[str, Any]]

    @property
    def passed(self) -> bool:
        """True when nothing is broken and nothing is unresolved."""
        return not self.violations and not self.unresolved

    def broken(self) -> List[tuple]:
        """(invariant, STAN) of every violation."""
        return [(v["invariant"], v["stan"]) for v in self.violations]

    def __str__(self) -> str:
        lines = [f"invariant {v['invariant']} broken for STAN {v['stan']}: {v['summary']}" for v in self.violations]
        lines += [f"unresolved STAN {u['stan']}: {u['summary']}" for u in self.unresolved]
        return "\n".join(lines) or "all invariants hold"


@dataclass
class Measurement:
    """A measured value with its unit and optional limits (OpenHTF style)."""

    name: str
    value: float
    unit: str
    low: Optional[float] = None
    high: Optional[float] = None

    @property
    def passed(self) -> bool:
        """True when the value is within its limits."""
        return (self.low is None or self.value >= self.low) and (self.high is None or self.value <= self.high)


class Terminal:
    """The terminal under test, driven through its console with its terminal profile."""

    def __init__(self, rig: "Rig") -> None:
        self._rig = rig

    def sale(self, amount: int, card: Optional[str] = None, timeout: float = 60.0) -> Outcome:
        """Runs a purchase of `amount` fen (inserting `card` first when given) to its end."""
        if card is not None:
            self._rig.card.insert(card)
        return self._run("sale", {"amount": str(int(amount))}, timeout)

    def void(self, stan: str, timeout: float = 60.0) -> Outcome:
        """Voids the sale with STAN `stan` to its end."""
        return self._run("void", {"stan": f"{int(stan):06d}"}, timeout)

    def settle(self, timeout: float = 60.0) -> Outcome:
        """Settles the batch."""
        return self._run("settle", {}, timeout)

    def start(self, command: str, **values: object) -> int:
        """Types a profile command (sale, void, settle, status, reprint) and returns at once with the
        console mark before it: for faults placed in the middle of a command."""
        return self._rig._native.type_command(command, {name: str(value) for name, value in values.items()})

    def reprint(self, timeout: float = 30.0) -> Event:
        """Reprints the last receipt; returns the receipt event."""
        mark = self.start("reprint")
        return self.wait("receipt", "refused", since=mark, timeout=timeout)

    def status(self, timeout: float = 30.0) -> Event:
        """Asks the terminal for its status; returns once it answered."""
        mark = self._rig._native.type_command("status", {})
        return self.wait("status", since=mark, timeout=timeout)

    def boot(self, timeout: float = 30.0) -> Event:
        """Powers the terminal on (if it is off) and waits until it is ready."""
        mark = self.mark()
        self._rig.power.on()
        return self.wait("ready", since=mark, timeout=timeout)

    def type(self, line: str) -> int:
        """Types a raw line on the console; returns the console mark before it."""
        mark = self.mark()
        self._rig._native.type_line(line)
        return mark

    def mark(self) -> int:
        """The number of console lines so far: a place to wait from."""
        return self._rig._native.mark()

    def wait(self, *names: str, since: Optional[int] = None, timeout: float = 30.0) -> Event:
        """Waits from console line `since` (default: now) for an event named in `names`."""
        start = self.mark() if since is None else since
        return Event._of(json.loads(self._rig._native.wait_event(start, list(names), timeout)))

    def events(self, since: int = 0) -> List[Event]:
        """Canonical events from console line `since` on."""
        return [Event._of(e) for e in json.loads(self._rig._native.events(since))]

    def console(self, since: int = 0) -> List[str]:
        """Raw console lines from `since` on."""
        return [line["text"] for line in json.loads(self._rig._native.console_lines(since))]

    def _run(self, command: str, values: Dict[str, str], timeout: float) -> Outcome:
        mark = self._rig._native.type_command(command, values)
        # The terminal does one thing at a time: its answer to `status` comes once the command,
        # and any reversal it caused, is finished.
        self._rig._native.type_command("status", {})
        status = self.wait("status", since=mark, timeout=timeout)
        events = [e for e in self.events(mark) if e.name != "status"]
        return _outcome(command, events, status)


def _outcome(command: str, events: Sequence[Event], status: Event) -> Outcome:
    prepared = next((e for e in events if e.name == "prepared"), None)
    stan = prepared["stan"] if prepared else None
    replies = [e for e in events if e.name == "reply_received" and e["stan"] == stan and e["mti"] in ("0210", "0510")]
    ended = next((e.name for e in events if e.name in ENDINGS), None)
    if ended is None:
        ended = "no_reply" if any(e.name in ("timeout", "mac_error", "reply_mismatch") for e in events) else "unknown"
    reversal = None
    for e in events:
        if e.name in REVERSAL_STATES and (stan is None or e["stan"] == stan):
            reversal = REVERSAL_STATES[e.name]
    receipt = next((e for e in events if e.name == "receipt"), None)
    return Outcome(
        command=command,
        stan=stan,
        response_code=replies[-1]["rc"] if replies else None,
        ended=ended,
        receipt=receipt,
        reversal=reversal,
        events=list(events),
        status=status,
    )


class Host:
    """The acquirer host: its fault knobs (domain.md §6), ledger and wire journal."""

    def __init__(self, rig: "Rig") -> None:
        self._rig = rig

    def _ask(self, request: Dict[str, Any]) -> Any:
        return json.loads(self._rig._native.host(json.dumps(request)))

    def rule(self, kind: Optional[str], action: str, stan: Optional[str] = None, times: Optional[int] = None, **params: Any) -> None:
        """Adds a rule: for requests of `kind` (signon, sale, void, reversal, settlement; None for
        all) and `stan`, `times` times (None: always), do `action` with its parameters."""
        rule: Dict[str, Any] = {"action": action, **params}
        if kind is not None:
            rule["kind"] = kind
        if stan is not None:
            rule["stan"] = stan
        if times is not None:
            rule["times"] = times
        self._ask({"op": "add_rule", "rule": rule})

    def respond(self, kind: str, code: str, **when: Any) -> None:
        """Answers requests of `kind` with response code `code`."""
        self.rule(kind, "respond", code=code, **when)

    def drop_reply(self, kind: str, **when: Any) -> None:
        """Processes requests of `kind` but never sends the reply."""
        self.rule(kind, "drop_reply", **when)

    def drop_request(self, kind: str, **when: Any) -> None:
        """Drops requests of `kind` before processing them."""
        self.rule(kind, "drop_request", **when)

    def delay(self, kind: str, ms: int, **when: Any) -> None:
        """Sends the reply to requests of `kind` `ms` milliseconds late."""
        self.rule(kind, "delay", ms=ms, **when)

    def duplicate(self, kind: str, **when: Any) -> None:
        """Sends the reply to requests of `kind` twice."""
        self.rule(kind, "duplicate", **when)

    def corrupt_mac(self, kind: str, **when: Any) -> None:
        """Sends the reply to requests of `kind` with a wrong MAC."""
        self.rule(kind, "corrupt_mac", **when)

    def alter(self, kind: str, field: str, **when: Any) -> None:
        """Alters `field` (stan, tid or amount) in the reply to requests of `kind`."""
        self.rule(kind, "alter", field=field, **when)

    def clear_rules(self) -> None:
        """Removes every rule."""
        self._ask({"op": "clear_rules"})

    def settings(self, **settings: bool) -> None:
        """Replaces the settings: idempotent_reversals, idempotent_voids, maintenance."""
        self._ask({"op": "settings", "settings": settings})

    def ledger(self) -> Dict[str, Any]:
        """The host's ledger: entries, postings, settlements, sign-ons."""
        return self._ask({"op": "ledger"})

    def net(self, stan: str, tid: str = "TERM0001", batch: str = "000001") -> int:
        """The net amount (fen) the host holds for the sale with this STAN."""
        key = {"tid": tid, "batch": batch, "stan": stan}
        return sum(p["delta"] for p in self.ledger()["postings"] if p["sale"] == key)

    def entry(self, stan: str, tid: str = "TERM0001", batch: str = "000001") -> Optional[Dict[str, Any]]:
        """The ledger entry of a sale or void."""
        return self.ledger()["entries"].get(f"{tid}/{batch}/{stan}")

    def journal(self, since: int = 0) -> List[Dict[str, Any]]:
        """Wire journal entries from position `since` on."""
        return self._ask({"op": "journal", "since": since})

    def messages(self, mti: Optional[str] = None, direction: Optional[str] = None, since: int = 0) -> List[Dict[str, Any]]:
        """Journal entries of messages, optionally of one MTI and direction ("in" or "out")."""
        return [
            e
            for e in self.journal(since)
            if e["mti"] is not None and (mti is None or e["mti"] == mti) and (direction is None or e["direction"] == direction)
        ]


class Power:
    """The terminal's power."""

    def __init__(self, rig: "Rig") -> None:
        self._rig = rig

    def on(self) -> None:
        """Restores power."""
        self._rig.perform({"action": "power_on"})

    def off(self) -> None:
        """Cuts power without warning."""
        self._rig.perform({"action": "power_off"})

    def cycle(self, off_ms: float = 500) -> None:
        """Cuts power, waits, restores it."""
        self._rig.perform({"action": "power_off"}, hold_ms=off_ms)


class Card:
    """The card in the reader."""

    def __init__(self, rig: "Rig") -> None:
        self._rig = rig

    def insert(self, name: str) -> None:
        """Inserts the card profile `name` (fixtures/cards/NAME.toml)."""
        self._rig.perform({"action": "card_insert", "card": name})

    def remove(self) -> None:
        """Pulls the card out."""
        self._rig.perform({"action": "card_remove"})


class Link:
    """The terminal's network link."""

    def __init__(self, rig: "Rig") -> None:
        self._rig = rig

    def down(self) -> None:
        """Takes the link down."""
        self._rig.perform({"action": "link_down"})

    def up(self) -> None:
        """Brings the link up."""
        self._rig.perform({"action": "link_up"})

    def flap(self, down_ms: float) -> None:
        """Takes the link down for `down_ms` milliseconds."""
        self._rig.perform({"action": "link_down"}, hold_ms=down_ms)


class When:
    """A trigger being described: `rig.when(...).after(ms).do(action)`."""

    def __init__(self, rig: "Rig", when: Any) -> None:
        self._rig = rig
        self._when = when
        self._after_ms = 0.0

    def after(self, ms: float) -> "When":
        """Acts `ms` milliseconds after the event."""
        self._after_ms = float(ms)
        return self

    def do(self, action: str, hold_ms: Optional[float] = None, every_time: bool = False, **params: Any) -> int:
        """Arms the trigger: do `action` (power_off, power_on, card_remove, card_insert with card=,
        link_down, link_up, reset_connections, clear_impairment, impair with impairment=), undo it
        after `hold_ms` if given, on the first match or `every_time`. Returns the trigger's id."""
        spec = {
            "when": self._when,
            "after_ms": self._after_ms,
            "action": {"action": action, **params},
            "hold_ms": hold_ms,
            "every_time": every_time,
        }
        return self._rig._native.arm(json.dumps(spec))


class Rig:
    """A rig: the terminal, its host, its power, card and link, triggers, timeline and oracle.

    `Rig(config)` starts it and brings it to the safe state (power on, card out, link up); use it
    as a context manager, or call `close()`, to leave it safe and stop it."""

    def __init__(
        self,
        config: str = "fixtures/rigs/sim.toml",
        link: Optional[str] = None,
        defects: Sequence[str] = (),
        settings: Sequence[str] = (),
        terminal_args: Sequence[str] = (),
        boot_timeout: float = 30.0,
    ) -> None:
        args = list(terminal_args)
        for defect in defects:
            args += ["--defect", defect]
        for setting in settings:
            args += ["--set", setting]
        self.config = config
        self._native = NativeRig(config, args, link)
        self.terminal = Terminal(self)
        self.host = Host(self)
        self.power = Power(self)
        self.card = Card(self)
        self.link = Link(self)
        self.measurements: List[Measurement] = []
        self.terminal.wait("ready", since=0, timeout=boot_timeout)

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Leaves the terminal in the safe state and stops the rig."""
        self._native.close()

    def has(self, capability: str) -> bool:
        """True when the rig has `capability` (power, card, link, impairment)."""
        return capability in self._native.capabilities()

    @property
    def link_kind(self) -> str:
        """The link backend: "netns" or "proxy"."""
        return self._native.link_kind()

    def perform(self, action: Dict[str, Any], hold_ms: Optional[float] = None) -> Dict[str, int]:
        """Performs an action now (see `When.do` for the names); returns its start and completion
        times on the rig's clock."""
        return json.loads(self._native.perform(json.dumps(action), hold_ms))

    def impair(self, delay_ms: float = 0, drop: float = 0.0, blackhole: bool = False) -> None:
        """Degrades the path to the host: delay every message, drop a share of them, or all."""
        impairment = {"delay": _duration(delay_ms), "drop": drop, "blackhole": blackhole}
        self.perform({"action": "impair", "impairment": impairment})

    def clear_impairment(self) -> None:
        """Removes every impairment."""
        self.perform({"action": "clear_impairment"})

    def reset_connections(self) -> None:
        """Resets every open connection between terminal and host."""
        self.perform({"action": "reset_connections"})

    def when(
        self,
        host: Optional[str] = None,
        direction: str = "in",
        stan: Optional[str] = None,
        event: Optional[str] = None,
        console: Optional[str] = None,
        **fields: str,
    ) -> When:
        """Starts a trigger: on a host message (`host="0200"`, `direction="in"|"out"`, `stan=`),
        a canonical terminal event (`event="request_sent", mti="0200"`) or a console line regex
        (`console=r"..."`); with none of them, on arming (a timer with `.after(ms)`)."""
        if host is not None:
            return When(self, {"host": {"direction": direction, "mti": host, "stan": stan}})
        if event is not None:
            return When(self, {"event": {"name": event, "fields": fields}})
        if console is not None:
            return When(self, {"console": console})
        return When(self, "armed")

    def firings(self, count: int = 0, timeout: float = 30.0) -> List[Firing]:
        """Every trigger firing so far, after waiting until `count` have completed."""
        return [Firing(**f) for f in json.loads(self._native.wait_firings(count, timeout))]

    def check(self) -> Verdict:
        """Judges the run so far against domain.md §5."""
        data = json.loads(self._native.verdict())
        return Verdict(data["violations"], data["unresolved"])

    def mark(self, name: str, detail: str = "") -> int:
        """Places a marker on the timeline; returns its time (ns)."""
        return self._native.marker(name, detail)

    def timeline(self, since: int = 0) -> List[Dict[str, Any]]:
        """Timeline entries from position `since` on, ordered by time."""
        return json.loads(self._native.timeline(since))

    def measure(self, name: str, value: float, unit: str, low: Optional[float] = None, high: Optional[float] = None) -> Measurement:
        """Records a measurement with its unit and limits in the run record."""
        measurement = Measurement(name, float(value), unit, low, high)
        self.measurements.append(measurement)
        return measurement

    @property
    def workdir(self) -> str:
        """The folder holding the simulated terminal's NVM, card slot and stderr."""
        return str(self._native.workdir())


def _duration(ms: float) -> Dict[str, int]:
    """A duration as the rig's JSON spells it."""
    whole = int(ms // 1000)
    return {"secs": whole, "nanos": int(round((ms - whole * 1000) * 1e6))}
