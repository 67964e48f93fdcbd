"""Purchases (消费) that end without a reversal: domain.md §4 P1, P6 and P10.

Each test runs one sale on a fresh rig and asserts what the terminal showed (its Outcome and
events), what crossed the wire (the host's journal), what the host booked (its ledger), and the
invariants of domain.md §5 (the rig's oracle).

The helpers here (the card, the amount, one sale, the wire as (direction, MTI, STAN, 39) tuples) are
the base of the reversal and network suites too.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest

CARD = "unionpay-debit"
AMOUNT = 12345
#: The same amount as the terminal prints it on a receipt (yuan).
AMOUNT_ON_RECEIPT = "123.45"
#: The host declines the terminal must show and never reverse (domain.md §4 P6).
DECLINES = ("05", "51", "54", "55", "61", "91", "94", "96")


def sale(rig, amount: int = AMOUNT):
    """Runs a purchase of `amount` fen with the test card, to its end."""
    return rig.terminal.sale(amount, card=CARD)


def financial_wire(rig, stan: str) -> List[Tuple[str, str, Optional[str]]]:
    """(direction, MTI, field 39) of every 0200/0210/0400/0410 the host journalled for `stan`."""
    return [
        (m["direction"], m["mti"], m["fields"].get("39"))
        for m in rig.host.messages()
        if m["mti"] in ("0200", "0210", "0400", "0410") and m["stan"] == stan
    ]


def assert_invariants_hold(rig) -> None:
    """The oracle finds no broken invariant and nothing unresolved."""
    verdict = rig.check()
    assert verdict.passed, str(verdict)


def assert_nothing_charged(rig, stan: str) -> None:
    """The host holds nothing for sale `stan`, and the invariants hold."""
    assert rig.host.net(stan) == 0
    assert_invariants_hold(rig)


@pytest.mark.scenario("P1")
def test_p1_plain_purchase_is_approved_and_printed_once_with_no_reversal(rig):
    outcome = sale(rig)

    assert (outcome.ended, outcome.response_code, outcome.reversal) == ("approved", "00", None)
    assert outcome.names.count("approved") == 1
    assert outcome.first("approved")["amount"] == str(AMOUNT)
    assert (outcome.receipt["stan"], outcome.receipt["amount"]) == (outcome.stan, AMOUNT_ON_RECEIPT)
    assert outcome.status["reversal"] == "none"
    assert financial_wire(rig, outcome.stan) == [("in", "0200", None), ("out", "0210", "00")]
    assert rig.host.messages("0400") == [], "no 0400 ever"
    assert rig.host.net(outcome.stan) == AMOUNT
    assert_invariants_hold(rig)


@pytest.mark.scenario("P6")
@pytest.mark.parametrize("code", DECLINES)
def test_p6_host_decline_shows_the_reason_and_is_never_reversed(rig, code):
    rig.host.respond("sale", code, times=1)

    outcome = sale(rig)

    assert (outcome.ended, outcome.response_code, outcome.reversal) == ("declined", code, None)
    assert outcome.first("declined")["rc"] == code, "the terminal shows the reason"
    assert outcome.receipt is None and not outcome.approved
    assert outcome.status["reversal"] == "none", "a definitive decline clears the reversal record"
    assert financial_wire(rig, outcome.stan) == [("in", "0200", None), ("out", "0210", code)]
    assert rig.host.entry(outcome.stan)["response_code"] == code
    assert_nothing_charged(rig, outcome.stan)


@pytest.mark.scenario("P10")
def test_p10_reply_sent_twice_gives_one_approval_and_one_receipt(rig):
    rig.host.duplicate("sale", times=1)

    outcome = sale(rig)

    assert (outcome.ended, outcome.reversal) == ("approved", None)
    assert outcome.names.count("approved") == 1 and outcome.names.count("receipt") == 1
    assert outcome.status["records"] == "1", "one record committed"
    assert financial_wire(rig, outcome.stan) == [
        ("in", "0200", None),
        ("out", "0210", "00"),
        ("out", "0210", "00"),
    ]
    assert rig.host.net(outcome.stan) == AMOUNT
    assert_invariants_hold(rig)
