"""Power loss: domain.md §4 W0, W2, W3, W4, W5, W6 and W7.

A trigger cuts the power (SIGKILL on the simulated rig: only what the firmware flushed survives) at a
chosen point of a sale, a reversal or a void, without Python in the loop; then the terminal boots
again. Each test asserts what survived on the terminal (its events after boot, its status, a
reprint), what the host received (no 0200 before its 0400, the 0400's fields and reason) and booked,
and the oracle's verdict: after any cut the terminal holds nothing, a pending reversal or a
committed record, and agrees with the host (invariant 6).
"""

from __future__ import annotations

from typing import List, Tuple

import posrig
import pytest
from conftest import assert_reversed_at_boot, cut_power, start
from test_purchase import AMOUNT, AMOUNT_ON_RECEIPT, CARD, assert_invariants_hold, sale
from test_reversal import assert_0400s_copy_the_0200, assert_reversed_once_at_the_host, received, wire_order
from test_void import approved_sale, assert_void_reversed, void_reversed_at_boot

pytestmark = pytest.mark.needs("power")

#: A flash write slow enough (60 ms instead of 15) that a cut placed just after an event lands
#: inside the write that follows it, however the machine is loaded.
SLOW_FLASH = "timing.flash_write_ms=60"


def cut_sale(rig: posrig.Rig, when: posrig.When) -> Tuple[int, int]:
    """Starts a sale with the test card, the power cut at `when`, and boots the terminal again.
    Returns the console marks before the sale and before the boot."""
    rig.card.insert(CARD)
    return cut_power(rig, when, amount=AMOUNT)


def assert_no_reversal(rig: posrig.Rig, mark: int, records: str) -> None:
    """The terminal holds `records` committed records and no reversal, and showed none since `mark`."""
    status = rig.terminal.status()
    assert (status["records"], status["reversal"]) == (records, "none")
    assert not [e.name for e in rig.terminal.events(mark) if e.name.startswith("reversal_")]


def events_before_boot(rig: posrig.Rig, mark: int, booted: int) -> List[str]:
    """Names of the terminal's events from console mark `mark` up to the boot at mark `booted`."""
    return [e.name for e in rig.terminal.events(mark)][: -len(rig.terminal.events(booted)) or None]


def assert_sale_reversed_at_boot(rig: posrig.Rig, mark: int, booted: int, reason: str, auth=None) -> str:
    """The sale started at console mark `mark` was cut before it committed: no approval, no receipt;
    after the boot at `booted` its reversal (39 = `reason`, 38 = `auth`) went out before anything
    else, took effect once, and the invariants hold. Returns the sale's STAN."""
    stan = rig.terminal.wait("prepared", since=mark)["stan"]
    shown = [e.name for e in rig.terminal.events(mark)]
    assert "approved" not in shown and "receipt" not in shown, shown
    assert_reversed_at_boot(rig, booted, stan, reason)
    assert wire_order(rig) == [("0200", stan), ("0400", stan)]
    assert_0400s_copy_the_0200(rig, stan, reason, auth)
    assert rig.host.entry(stan)["response_code"] == "00", "the host approved the sale"
    assert_reversed_once_at_the_host(rig, stan)
    return stan


@pytest.mark.scenario("W0")
def test_w0_power_cut_before_anything_was_sent_leaves_the_terminal_idle(rig):
    # The STAN is flushed; the write-ahead reversal record is still being written.
    mark, _ = cut_sale(rig, rig.when(event="prepared"))

    taken = rig.terminal.wait("prepared", since=mark)["stan"]
    assert_no_reversal(rig, mark, records="0")
    assert received(rig, "0200") == [] and received(rig, "0400") == [], "nothing reached the host"
    assert rig.host.ledger()["entries"] == {}
    following = sale(rig)
    assert following.ended == "approved"
    assert int(following.stan) > int(taken), "the STAN taken before the cut is never used again"
    assert rig.host.net(following.stan) == AMOUNT
    assert_invariants_hold(rig)


@pytest.mark.scenario("W2")
def test_w2_power_cut_right_after_the_request_left_is_reversed_after_boot(rig):
    mark, booted = cut_sale(rig, rig.when(host="0200"))

    assert_sale_reversed_at_boot(rig, mark, booted, "98")


@pytest.mark.scenario("W3")
def test_w3_power_cut_while_waiting_for_the_reply_is_reversed_after_boot(rig):
    rig.host.delay("sale", ms=1000, times=1)

    mark, booted = cut_sale(rig, rig.when(event="request_sent", mti="0200").after(300))

    waiting = events_before_boot(rig, mark, booted)
    assert waiting[-1] == "request_sent" and "reply_received" not in waiting, "cut while waiting for the 0210"
    assert_sale_reversed_at_boot(rig, mark, booted, "98")


@pytest.mark.scenario("W4")
def test_w4_power_cut_after_the_approval_before_completion_is_reversed_with_96(rig):
    # During the 2nd GENERATE AC (40 ms), after the auth code was stored with the reversal.
    mark, booted = cut_sale(rig, rig.when(event="approval_pending").after(10))

    assert events_before_boot(rig, mark, booted)[-1] == "approval_pending"
    [reply] = rig.host.messages("0210", "out")
    assert_sale_reversed_at_boot(rig, mark, booted, "96", auth=reply["fields"]["38"])


@pytest.mark.scenario("W5")
def test_w5_power_cut_after_commit_keeps_the_approved_record_and_sends_nothing_more(rig):
    mark, _ = cut_sale(rig, rig.when(event="approved"))

    stan = rig.terminal.wait("approved", since=mark)["stan"]
    assert_no_reversal(rig, mark, records="1")
    reprinted = rig.terminal.wait("receipt", since=start(rig, "reprint"))
    assert (reprinted["type"], reprinted["stan"], reprinted["amount"]) == ("sale", stan, AMOUNT_ON_RECEIPT)
    assert wire_order(rig) == [("0200", stan)], "nothing more after the 0200"
    assert rig.host.net(stan) == AMOUNT
    assert_invariants_hold(rig)


@pytest.mark.scenario("W6")
def test_w6_power_cut_during_a_reversal_exchange_keeps_it_pending_with_its_attempts(make_rig):
    # Without a reversal at boot, the status after boot shows the record as the cut left it.
    rig = make_rig(settings=["policy.reversal_at_boot=false"])
    rig.host.drop_reply("sale", times=1)
    rig.host.respond("reversal", "96", times=1)
    rig.host.delay("reversal", ms=1000, times=1)

    # The first 0400 is refused (attempt 1 of 3); the cut lands while the second awaits its 0410.
    mark, booted = cut_sale(rig, rig.when(event="reversal_rejected").after(300))

    stan = rig.terminal.wait("prepared", since=mark)["stan"]
    assert rig.terminal.wait("reversal_rejected", since=mark)["attempt"] == "1"
    assert events_before_boot(rig, mark, booted)[-2:] == ["reversal_rejected", "request_sent"], "cut awaiting the 0410"
    assert rig.terminal.status()["reversal"] == f"{stan}/98/1", "still pending, its one counted attempt persisted"
    following = sale(rig)
    assert following.ended == "approved"
    assert following.names.index("reversal_done") < following.names.index("prepared"), "the 0400 goes first"
    assert wire_order(rig) == [("0200", stan)] + [("0400", stan)] * 3 + [("0200", following.stan)]
    assert_0400s_copy_the_0200(rig, stan, "98")
    assert rig.host.entry(stan)["reversal_requests"] == 3
    assert rig.host.net(following.stan) == AMOUNT
    assert_reversed_once_at_the_host(rig, stan)


@pytest.mark.scenario("W7")
def test_w7_power_cut_while_a_void_commits_leaves_the_sale_valid_and_the_void_reversed(make_rig):
    rig = make_rig(settings=[SLOW_FLASH])
    sold = approved_sale(rig)

    # The host approved the void; the cut lands inside the write that would commit it.
    mark, booted = cut_power(rig, rig.when(event="reply_received", mti="0210").after(5), "void", stan=sold.stan)

    assert events_before_boot(rig, mark, booted)[-1] == "reply_received"
    void_stan = void_reversed_at_boot(rig, mark, booted)
    assert rig.host.entry(void_stan)["response_code"] == "00", "the host had approved the void"
    assert_void_reversed(rig, sold, void_stan)
