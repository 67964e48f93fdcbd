"""Voids (消费撤销): domain.md §4 V1, V2, V3, V7, V9 and V10.

Each test voids a sale the terminal approved on the same rig and asserts what the terminal showed
(the void's Outcome and events), the void on the wire (0200, processing code 200000, 60.1 = 23, 37/38/61
of the original), the host's ledger (the sale's net and who voided it) and the oracle's verdict. A void
is reversible like a sale: when its outcome is unknown the terminal reverses it (a 0400 carrying 61)
and the sale stands on both sides, ready to be voided again.
"""

from __future__ import annotations

from typing import Any, Dict, List

import posrig
import pytest
from conftest import assert_reversed_at_boot, cut_power
from test_purchase import AMOUNT, assert_invariants_hold, financial_wire, sale
from test_reversal import assert_0400s_copy_the_0200, journal_mark, received

#: Processing code of a void (domain.md §1).
VOID = "200000"


def approved_sale(rig: posrig.Rig) -> posrig.Outcome:
    """Runs a sale that the terminal approves."""
    outcome = sale(rig)
    assert outcome.ended == "approved", outcome.names
    return outcome


def voids_on_the_wire(rig: posrig.Rig) -> List[Dict[str, Any]]:
    """The voids (0200 with processing code 200000) the host received."""
    return [m for m in received(rig, "0200") if m["fields"]["3"] == VOID]


def assert_voided(rig: posrig.Rig, sold: posrig.Outcome) -> posrig.Outcome:
    """Voids `sold` and asserts the void was approved, committed with the sale marked voided, and
    booked by the host: the sale's net is 0 and the void is its only one. Returns the void."""
    void = rig.terminal.void(sold.stan)
    assert (void.ended, void.response_code, void.reversal) == ("voided", "00", None), void.names
    assert (void.first("voided")["original"], void.first("voided")["amount"]) == (sold.stan, str(AMOUNT))
    assert (void.receipt["type"], void.receipt["stan"]) == ("void", void.stan)
    assert void.status["reversal"] == "none"
    assert rig.host.entry(sold.stan)["voided_by"] == [void.stan]
    assert rig.host.net(sold.stan) == 0
    return void


def assert_the_sale_stands(rig: posrig.Rig, sold: posrig.Outcome) -> None:
    """After a void of `sold` that did not go through, the sale is valid on both sides (the host
    holds its amount; the invariants hold) and can be voided again."""
    assert rig.host.entry(sold.stan)["voided_by"] == [], "the sale is not voided at the host"
    assert rig.host.net(sold.stan) == AMOUNT, "the sale stands"
    assert_invariants_hold(rig)

    assert_voided(rig, sold)
    assert_invariants_hold(rig)


def assert_void_reversed(rig: posrig.Rig, sold: posrig.Outcome, void_stan: str) -> None:
    """The void `void_stan` of `sold` was reversed: its 0400s repeat the void's 3, 4, 11, 41, 42, 60 and
    61 with 39 = 98 (no reply), the reversal took effect once, and the sale stands."""
    [void] = received(rig, "0200", void_stan)
    reversals = assert_0400s_copy_the_0200(rig, void_stan, "98")
    assert {r["fields"].get("61") for r in reversals} == {void["fields"]["61"]}, "a void's 0400 carries its 61"
    assert rig.host.entry(void_stan)["reversals_applied"] == 1
    assert_the_sale_stands(rig, sold)


def void_reversed_at_boot(rig: posrig.Rig, mark: int, booted: int) -> str:
    """The void started at console mark `mark` was cut before it committed, and after the boot at
    `booted` its reversal was pending and went out. Returns the void's STAN."""
    void_stan = rig.terminal.wait("prepared", since=mark)["stan"]
    assert "voided" not in [e.name for e in rig.terminal.events(mark)], "the void never committed"
    assert_reversed_at_boot(rig, booted, void_stan, "98")
    return void_stan


@pytest.mark.scenario("V1")
def test_v1_void_of_an_approved_sale_cancels_it_on_both_sides(rig):
    sold = approved_sale(rig)
    approval = sold.first("approved")

    void = assert_voided(rig, sold)

    [request] = voids_on_the_wire(rig)
    fields = request["fields"]
    assert (fields["11"], fields["4"], fields["60"][:2]) == (void.stan, f"{AMOUNT:012d}", "23")
    assert (fields["37"], fields["38"]) == (approval["rrn"], approval["auth"]), "37/38 of the original"
    assert fields["61"][:12] == "000001" + sold.stan, "61.1 batch and 61.2 STAN of the original"
    assert financial_wire(rig, void.stan) == [("in", "0200", None), ("out", "0210", "00")]
    assert rig.host.messages("0400") == [], "no 0400 ever"
    assert rig.host.entry(void.stan)["original"]["stan"] == sold.stan
    assert_invariants_hold(rig)


@pytest.mark.scenario("V2")
def test_v2_void_of_an_unknown_trace_is_refused_locally_with_nothing_sent(rig):
    sold = approved_sale(rig)
    unknown = f"{int(sold.stan) + 100:06d}"
    mark = journal_mark(rig)

    void = rig.terminal.void(unknown)

    assert (void.ended, void.stan) == ("refused", None), void.names
    refused = void.first("refused")
    assert (refused["why"], refused["original"]) == ("unknown trace", unknown)
    assert void.status["stan"] == sold.status["stan"], "no STAN taken"
    assert rig.host.messages(since=mark) == [], "nothing reached the host"
    assert rig.host.net(sold.stan) == AMOUNT
    assert_invariants_hold(rig)


@pytest.mark.scenario("V3")
def test_v3_void_of_an_already_voided_sale_is_refused_locally(rig):
    sold = approved_sale(rig)
    first = assert_voided(rig, sold)
    mark = journal_mark(rig)

    again = rig.terminal.void(sold.stan)

    assert (again.ended, again.stan) == ("refused", None), again.names
    assert (again.first("refused")["why"], again.first("refused")["original"]) == ("already voided", sold.stan)
    assert rig.host.messages(since=mark) == [], "nothing reached the host"
    assert [m["stan"] for m in voids_on_the_wire(rig)] == [first.stan], "one void on the wire"
    assert rig.host.entry(sold.stan)["voided_by"] == [first.stan], "void applied once"
    assert rig.host.net(sold.stan) == 0
    assert_invariants_hold(rig)


@pytest.mark.scenario("V7")
def test_v7_lost_void_reply_is_reversed_and_the_sale_stands_and_can_be_voided_again(rig):
    sold = approved_sale(rig)
    rig.host.drop_reply("void", times=1)

    void = rig.terminal.void(sold.stan)

    assert (void.ended, void.reversal, void.receipt) == ("no_reply", "done", None), void.names
    assert "timeout" in void.names and "voided" not in void.names
    assert void.first("reversal_pending")["reason"] == "98"
    assert void.status["reversal"] == "none"
    assert financial_wire(rig, void.stan) == [("in", "0200", None), ("in", "0400", "98"), ("out", "0410", "00")]
    assert_void_reversed(rig, sold, void.stan)


@pytest.mark.scenario("V9")
def test_v9_declined_void_leaves_the_sale_valid(rig):
    sold = approved_sale(rig)
    rig.host.respond("void", "96", times=1)

    void = rig.terminal.void(sold.stan)

    assert (void.ended, void.response_code, void.reversal, void.receipt) == ("declined", "96", None, None), void.names
    assert void.first("declined")["rc"] == "96"
    assert void.status["reversal"] == "none", "a definitive decline clears the void's reversal record"
    assert financial_wire(rig, void.stan) == [("in", "0200", None), ("out", "0210", "96")]
    assert rig.host.messages("0400") == [], "no 0400 for a decline"
    assert_the_sale_stands(rig, sold)


@pytest.mark.scenario("V10")
@pytest.mark.needs("power")
def test_v10_power_cut_after_the_void_left_is_reversed_at_boot_and_the_sale_stands(rig):
    sold = approved_sale(rig)

    mark, booted = cut_power(rig, rig.when(host="0200"), "void", stan=sold.stan)

    assert_void_reversed(rig, sold, void_reversed_at_boot(rig, mark, booted))
