"""Card handling: domain.md §4 C1, C2, C3 and C4.

The card feeder pulls the card at a chosen point of a sale (a trigger on a terminal event or on the
host's reply, acted on without Python in the loop), or a chip card declines at the 2nd GENERATE AC.
Each test asserts how the sale ended on the terminal, what crossed the wire (no 0200 when the card
left before the request; a 0400 with reason 96, the auth code and the card's reversal tags when the
approval could not complete), the host's ledger and the oracle's verdict.
"""

from __future__ import annotations

import posrig
import pytest
from test_purchase import AMOUNT, assert_invariants_hold, financial_wire, sale
from test_reversal import assert_0400s_copy_the_0200, assert_reversed_once_at_the_host, received

pytestmark = pytest.mark.needs("card")

#: The chip card that answers AAC at the 2nd GENERATE AC (fixtures/cards/unionpay-aac.toml).
AAC_CARD = "unionpay-aac"


def assert_reversed_with_96(rig: posrig.Rig, outcome: posrig.Outcome, why: str) -> dict:
    """The host approved the sale, the terminal could not complete it (`why`) and reversed it at once
    with 39 = 96 and the auth code it had stored; nothing is charged. Returns the 0400."""
    assert (outcome.ended, outcome.response_code, outcome.reversal) == ("terminated", "00", "done"), outcome.names
    assert outcome.first("terminated")["why"] == why
    assert "approved" not in outcome.names and outcome.receipt is None
    auth = outcome.first("approval_pending")["auth"]
    assert outcome.first("reversal_pending")["reason"] == "96"
    assert outcome.status["reversal"] == "none"
    assert financial_wire(rig, outcome.stan) == [
        ("in", "0200", None),
        ("out", "0210", "00"),
        ("in", "0400", "96"),
        ("out", "0410", "00"),
    ]
    [reversal] = assert_0400s_copy_the_0200(rig, outcome.stan, "96", auth)
    assert_reversed_once_at_the_host(rig, outcome.stan)
    return reversal


@pytest.mark.scenario("C1")
def test_c1_card_pulled_before_the_request_terminates_with_nothing_sent(rig):
    # Pulled while the terminal reads it; noticed when it checks the card just before the request.
    rig.when(event="card_read").do("card_remove")

    outcome = sale(rig)

    assert (outcome.ended, outcome.reversal, outcome.receipt) == ("terminated", None, None), outcome.names
    assert outcome.first("terminated")["why"] == "card removed before the request"
    assert "request_sent" not in outcome.names
    assert (outcome.status["records"], outcome.status["reversal"]) == ("0", "none")
    assert received(rig, "0200") == [], "nothing reached the host"
    assert rig.host.ledger()["entries"] == {}
    assert rig.host.net(outcome.stan) == 0
    assert_invariants_hold(rig)


@pytest.mark.scenario("C2")
def test_c2_card_pulled_after_the_approval_before_completion_is_reversed_with_96(rig):
    # Pulled the moment the host sends its approval; noticed at the 2nd GENERATE AC.
    rig.when(host="0210", direction="out").do("card_remove")

    outcome = sale(rig)

    assert outcome.first("card_removed")["stan"] == outcome.stan
    assert "second_generate_ac" not in outcome.names
    reversal = assert_reversed_with_96(rig, outcome, "card removed before completion")
    # DE55 of the 0400: the reversal tags only (the card's ATC, 9F36), not the request's cryptogram.
    assert reversal["fields"]["55"] == "9F36020017"


@pytest.mark.scenario("C3")
def test_c3_card_answering_aac_is_reversed_with_96_and_its_icc_data(rig):
    outcome = rig.terminal.sale(AMOUNT, card=AAC_CARD)

    assert outcome.first("second_generate_ac")["result"] == "AAC"
    reversal = assert_reversed_with_96(rig, outcome, "the card declined the approval (AAC)")
    # DE55 of the 0400: the card's ATC (9F36) and the AAC's cryptogram information data (9F27 = 00).
    assert reversal["fields"]["55"] == "9F360200419F270100"


@pytest.mark.scenario("C4")
def test_c4_card_pulled_after_completion_leaves_the_sale_approved(rig):
    rig.when(event="approved").do("card_remove")

    outcome = sale(rig)

    [pulled] = rig.firings(1)
    assert pulled.error is None and pulled.event_ns >= outcome.first("approved").t_ns

    assert (outcome.ended, outcome.response_code, outcome.reversal) == ("approved", "00", None), outcome.names
    assert (outcome.receipt["stan"], outcome.receipt["type"]) == (outcome.stan, "sale")
    assert "card_removed" not in outcome.names
    assert (outcome.status["records"], outcome.status["reversal"]) == ("1", "none")
    assert financial_wire(rig, outcome.stan) == [("in", "0200", None), ("out", "0210", "00")]
    assert rig.host.messages("0400") == [], "no 0400 ever"
    assert rig.host.net(outcome.stan) == AMOUNT
    assert_invariants_hold(rig)
