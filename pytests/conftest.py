"""Helpers shared by the void, power-loss, card-handling and sweep suites, for faults that interrupt a
terminal command: start the command without waiting for its end, let a trigger act in the middle of
it, then boot the terminal again. The suites import them (`from conftest import ...`); the fixtures
(rig, make_rig, terminal, host, cards) belong to the posrig plugin.
"""

from __future__ import annotations

from typing import Optional, Tuple

import posrig

def start(rig: posrig.Rig, command: str, **values: object) -> int:
    """Starts a terminal command without waiting for its end (a cut may interrupt it); returns the
    console mark before it."""
    return rig.terminal.start(command, **values)


def interrupt(
    rig: posrig.Rig,
    when: posrig.When,
    action: str,
    command: str,
    hold_ms: Optional[float] = None,
    **values: object,
) -> Tuple[int, posrig.Firing]:
    """Arms `when` to do `action` (undone after `hold_ms` if given), starts `command`, and waits until
    the action, and its undo, are done. Returns the console mark before the command and the firing."""
    count = len(rig.firings()) + 1
    trigger = when.do(action, hold_ms=hold_ms)
    mark = start(rig, command, **values)
    firing = next((f for f in rig.firings(count) if f.trigger == trigger), None)
    assert firing is not None, f"trigger {trigger} ({action}) never fired"
    assert firing.error is None, f"trigger {trigger} ({action}) failed: {firing.error}"
    return mark, firing


def boot(rig: posrig.Rig) -> int:
    """Powers the terminal on and waits until it is ready, i.e. after what it does at boot (sign-on, a
    pending reversal). Returns the console mark before the boot."""
    mark = rig.terminal.mark()
    rig.terminal.boot()
    return mark


def cut_power(rig: posrig.Rig, when: posrig.When, command: str = "sale", **values: object) -> Tuple[int, int]:
    """Starts `command` with the power cut at `when`, then boots the terminal again. Returns the
    console marks before the command and before the boot."""
    mark, _ = interrupt(rig, when, "power_off", command, **values)
    return mark, boot(rig)


def assert_reversed_at_boot(rig: posrig.Rig, booted: int, stan: str, reason: str) -> None:
    """After the boot at console mark `booted`, the terminal showed the reversal of `stan` (39 =
    `reason`) pending, delivered it, and has nothing pending any more."""
    shown = [(e.name, e["stan"], e["reason"]) for e in rig.terminal.events(booted) if e.name.startswith("reversal_")]
    assert shown == [("reversal_pending", stan, reason), ("reversal_done", stan, "")], "pending after boot, then sent"
    assert rig.terminal.status()["reversal"] == "none"
