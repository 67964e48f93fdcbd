"""Network faults between the terminal and the host: domain.md §4 P2, a link flap while the 0400
is in flight (P11), P13 with the link down, a slow or lossy path (P4, P5 over an impaired link),
and P5 with the 0200 held up until its reversals have overtaken it: with 25 counted as success
the cardholder is charged for a reversed sale (the rig reports invariants 1, 2 and 6); with 00
only, the reversal fails and the run is unresolved.

The link is switched with rig.link.down()/up() or a trigger (`rig.when(...).do("link_down")`),
which work on every link backend; impairments come from the userspace proxy the simulated rig puts
on either of its links (on hardware, from nftables or the proxy) and are skipped, with the reason,
on a rig configured without them.
"""

from __future__ import annotations

import time

import pytest
from test_purchase import AMOUNT, assert_invariants_hold, assert_nothing_charged, financial_wire, sale
from test_reversal import (  # noqa: F401 (rig_with is a fixture)
    LAZY,
    assert_reversed,
    assert_reversed_before_the_next_sale,
    assert_reversed_once_at_the_host,
    assert_the_reversal_goes_before_the_next_sale,
    journal_mark,
    received,
    rig_with,
)

#: Flash writes slow enough that a trigger on `prepared` lands before the request is sent.
SLOW_FLASH = "timing.flash_write_ms=60"
#: Where the link goes down in P2: before the sale starts, or once the STAN and the write-ahead
#: reversal record are being stored, before the request can leave.
LINK_CUTS = {
    "before_the_sale": lambda rig: rig.link.down(),
    "once_the_stan_is_taken": lambda rig: rig.when(event="prepared").do("link_down"),
}


def heal_on_timeout(rig) -> None:
    """Once the terminal gives up on the reply, the path heals so that its reversal gets through."""
    rig.when(event="timeout").do("clear_impairment")


@pytest.mark.scenario("P2")
@pytest.mark.needs("link")
@pytest.mark.parametrize("cut", LINK_CUTS)
def test_p2_link_down_before_the_request_fails_the_sale_with_nothing_sent(rig_with, cut):
    rig = rig_with(SLOW_FLASH)
    mark = journal_mark(rig)
    LINK_CUTS[cut](rig)

    outcome = sale(rig)

    assert (outcome.ended, outcome.reversal, outcome.receipt) == ("terminated", None, None), outcome.names
    assert "host unreachable" in outcome.first("terminated")["why"]
    assert "request_sent" not in outcome.names
    assert outcome.status["reversal"] == "none", "nothing was sent: nothing to reverse"
    assert rig.host.messages(since=mark) == [], "nothing reached the host"
    assert rig.host.entry(outcome.stan) is None
    rig.link.up()
    assert sale(rig).ended == "approved", "back online once the link is up"
    assert_invariants_hold(rig)


@pytest.mark.scenario("P11")
@pytest.mark.needs("link")
def test_p11_link_flap_during_the_0400_is_retried_and_applied_once(rig):
    rig.host.drop_reply("sale", times=1)
    # The 0410 is held at the host long enough for the link to be down when it leaves.
    rig.host.delay("reversal", ms=300, times=1)
    rig.when(host="0400").do("link_down")

    flapped = sale(rig)
    rig.firings(1)

    assert (flapped.ended, flapped.reversal) == ("no_reply", "pending"), flapped.names
    assert flapped.first("reversal_rejected")["attempt"] == "1", "the lost 0410 counts as an attempt"
    assert "reversal_unreachable" in flapped.names, "the retry found the link down"
    rig.link.up()
    assert_reversed_before_the_next_sale(rig, flapped, sale(rig), tries=2)


@pytest.mark.scenario("P13")
@pytest.mark.needs("link")
def test_p13_no_sale_goes_online_while_a_reversal_is_pending_and_the_link_is_down(rig_with):
    rig = rig_with(LAZY)
    assert_the_reversal_goes_before_the_next_sale(rig, cut=rig.link.down, restore=rig.link.up)


@pytest.mark.scenario("P4")
@pytest.mark.needs("impairment")
def test_p4_reply_held_up_by_a_slow_link_is_ignored_and_the_sale_reversed(rig):
    # A second each way: the 0200 reaches the host within T_resp (1.5 s), the 0210 comes back too late.
    rig.impair(delay_ms=1000)
    heal_on_timeout(rig)

    outcome = sale(rig)

    [request] = received(rig, "0200", outcome.stan)
    assert request["t_ns"] - outcome.first("request_sent").t_ns >= 1e9, "the request was held a second"
    assert_reversed(rig, outcome, "timeout", "98")
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P5")
@pytest.mark.needs("impairment")
def test_p5_request_lost_on_the_wire_is_reversed_as_unknown_with_25(rig_with):
    rig = rig_with('policy.reversal_success_codes=["00","12","25"]')
    rig.impair(drop=1.0)
    heal_on_timeout(rig)

    outcome = sale(rig)

    assert (outcome.ended, outcome.reversal) == ("no_reply", "done"), outcome.names
    assert outcome.first("reversal_done")["rc"] == "25"
    assert financial_wire(rig, outcome.stan) == [("in", "0400", "98"), ("out", "0410", "25")], "the 0200 never arrived"
    assert rig.host.entry(outcome.stan) is None
    assert_nothing_charged(rig, outcome.stan)


def wait_for_late_request(rig, stan: str, timeout_s: float = 10.0) -> None:
    """Waits until the host has received (and answered) the 0200 of `stan` the proxy held back."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if [m for m in rig.host.messages("0210", "out") if m["stan"] == stan]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the held 0200 of STAN {stan} never reached the host")


@pytest.mark.scenario("P5")
@pytest.mark.needs("impairment")
def test_p5_a_request_held_past_its_own_reversal_is_a_double_charge_when_25_counts_as_success(rig_with):
    """P5 with the 0200 held back rather than lost: the terminal times out, its 0400 overtakes the
    0200 and is answered 25 (original not found), which this terminal's policy counts as done; the
    0200 then arrives and is approved. The cardholder is charged for a sale the terminal reversed:
    the rig must report it (invariants 1, 2 and 6), not pass it."""
    rig = rig_with('policy.reversal_success_codes=["00","12","25"]')
    # Held three seconds, twice the reply timeout; the path heals the moment the terminal gives up,
    # so its 0400 goes straight through while the 0200 is still held.
    rig.impair(delay_ms=3000)
    heal_on_timeout(rig)

    outcome = sale(rig)
    assert (outcome.ended, outcome.reversal) == ("no_reply", "done"), outcome.names
    assert outcome.first("reversal_done")["rc"] == "25", "the 0400 overtook the 0200"
    wait_for_late_request(rig, outcome.stan)

    assert financial_wire(rig, outcome.stan) == [
        ("in", "0400", "98"),
        ("out", "0410", "25"),
        ("in", "0200", None),
        ("out", "0210", "00"),
    ], "the 0200 arrived after its reversal and was approved"
    assert rig.host.net(outcome.stan) == AMOUNT, "the cardholder is charged"
    verdict = rig.check()
    assert verdict.broken() == [(1, outcome.stan), (2, outcome.stan), (6, outcome.stan)], str(verdict)
    assert "reached the host before it, reversing nothing" in verdict.violations[1]["summary"], str(verdict)


@pytest.mark.scenario("P5")
@pytest.mark.needs("impairment")
def test_p5_a_request_held_past_its_reversals_leaves_them_failed_and_the_run_unresolved_with_00_only(rig):
    """The same held 0200 against the default policy (00 the only success code): every 0400
    overtakes it and is answered 25, the terminal gives up (reversal failed), then the 0200 is
    approved. Nothing is broken on the terminal's side — its 0400s went out first — but the host
    holds the amount: the run is unresolved, never a pass."""
    rig.impair(delay_ms=3000)
    heal_on_timeout(rig)

    outcome = sale(rig)
    assert (outcome.ended, outcome.reversal) == ("no_reply", "failed"), outcome.names
    wait_for_late_request(rig, outcome.stan)
    assert sale(rig).ended == "approved", "the next sale goes online"

    assert rig.host.net(outcome.stan) == AMOUNT
    verdict = rig.check()
    assert verdict.broken() == [], str(verdict)
    [unresolved] = verdict.unresolved
    assert unresolved["stan"] == outcome.stan and f"holds {AMOUNT}" in unresolved["summary"], str(verdict)
