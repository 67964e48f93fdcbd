"""Reversals (冲正): domain.md §4 P3, P4, P5, P7, P9, P11, P12, P13, P14 and P16.

Every test places its fault with the host's knobs (rig.host) and asserts what the terminal showed
(its Outcome and events), the 0400s on the wire (fields 3, 4, 11, 41, 42, 60 copied from the 0200,
39 the reason, 38 only when an auth code was received, no track or PIN data), the host's ledger,
and the oracle's verdict. Reversals that go out at once have their latency recorded: ms from the
terminal's timeout (or MAC error, or mismatch) event to reversal_done.

Tests that need a terminal policy other than the default start their own rig with `rig_with`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from test_purchase import AMOUNT, CARD, assert_nothing_charged, financial_wire, sale

#: The 0400 repeats these fields of the original (domain.md §3).
COPIED_FIELDS = ("3", "4", "11", "41", "42", "60")
#: Track 2, track 3 and the PIN block never travel in a reversal.
CARDHOLDER_SECRETS = {"35", "36", "52"}
#: Terminal events that start a reversal of a request just sent.
CAUSES = ("timeout", "mac_error", "reply_mismatch")
#: A reversal waits for the next online message instead of going out at once.
LAZY = 'policy.reversal_trigger="lazy"'
#: How late the host answers in P4: after T_resp (1.5 s on the simulated rig).
LATE_MS = 2000


@pytest.fixture
def rig_with(make_rig):
    """Starts a rig whose terminal runs with extra posterm settings (`--set` values)."""
    return lambda *settings: make_rig(settings=settings)


def received(rig, mti: str, stan: Optional[str] = None) -> List[Dict[str, Any]]:
    """The messages of this MTI (and STAN) the host received, in order."""
    return [m for m in rig.host.messages(mti, "in") if stan is None or m["stan"] == stan]


def wire_order(rig) -> List[tuple]:
    """(MTI, STAN) of every request but sign-ons the host received, in order."""
    return [(m["mti"], m["stan"]) for m in rig.host.messages(direction="in") if m["mti"] != "0800"]


def journal_mark(rig) -> int:
    """A place in the host's journal: what comes after it is new."""
    return len(rig.host.journal())


def assert_0400s_copy_the_0200(rig, stan: str, reason: str, auth: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every 0400 for `stan` copies the 0200's key fields, gives `reason` in 39, carries 38 only as
    `auth`, and no track or PIN data (invariant 8). Returns them."""
    [request] = received(rig, "0200", stan)
    reversals = received(rig, "0400", stan)
    assert reversals, f"no 0400 for STAN {stan}"
    for reversal in reversals:
        fields = reversal["fields"]
        assert {n: fields.get(n) for n in COPIED_FIELDS} == {n: request["fields"].get(n) for n in COPIED_FIELDS}
        assert (fields.get("39"), fields.get("38")) == (reason, auth)
        assert not CARDHOLDER_SECRETS & set(fields), f"0400 #{reversal['seq']} carries cardholder data"
    return reversals


def measure_reversal_latency(rig, outcome, end: str = "reversal_done", name: str = "reversal_latency") -> None:
    """Records ms from the event that made the terminal reverse to `end`, within 5 s."""
    cause = next(e for e in outcome.events if e.name in CAUSES)
    latency = rig.measure(name, (outcome.first(end).t_ns - cause.t_ns) / 1e6, "ms", high=5000)
    assert latency.passed, f"{name} {latency.value:.0f} ms"


def assert_reversed(rig, outcome, cause: str, reason: str, auth: Optional[str] = None) -> List[Dict[str, Any]]:
    """The sale ended in `cause` with no approval and no receipt, and its reversal (39 = `reason`)
    went out at once and was accepted. Returns the 0400s."""
    assert (outcome.ended, outcome.reversal, outcome.receipt) == ("no_reply", "done", None), outcome.names
    assert cause in outcome.names and "approved" not in outcome.names
    assert outcome.first("reversal_pending")["reason"] == reason
    assert outcome.status["reversal"] == "none"
    reversals = assert_0400s_copy_the_0200(rig, outcome.stan, reason, auth)
    measure_reversal_latency(rig, outcome)
    return reversals


def assert_reversed_once_at_the_host(rig, stan: str) -> None:
    """The host booked the sale and its reversal exactly once: nothing charged; invariants hold."""
    assert rig.host.entry(stan)["reversals_applied"] == 1
    assert_nothing_charged(rig, stan)


def assert_reversed_before_the_next_sale(rig, stranded, following, tries: int = 1) -> None:
    """The reversal of the `stranded` sale went out (`tries` 0400s in all) before the `following`
    sale, which the host approved; the stranded sale is reversed once at the host."""
    assert following.ended == "approved", following.names
    assert following.names.index("reversal_done") < following.names.index("prepared")
    assert int(following.stan) > int(stranded.stan), "STANs increase"
    requests = [("0200", stranded.stan)] + [("0400", stranded.stan)] * tries + [("0200", following.stan)]
    assert wire_order(rig) == requests, "no 0200 before the 0400"
    assert len(assert_0400s_copy_the_0200(rig, stranded.stan, "98")) == tries
    assert rig.host.entry(stranded.stan)["reversal_requests"] == tries
    assert rig.host.net(following.stan) == AMOUNT
    assert_reversed_once_at_the_host(rig, stranded.stan)


def assert_the_reversal_goes_before_the_next_sale(rig, cut, restore) -> None:
    """P13: a reversal is pending (lazy policy) when `cut` puts the host out of reach. A new sale is
    refused with nothing sent; once `restore`d, the 0400 goes before the next 0200."""
    rig.host.drop_reply("sale", times=1)
    stranded = sale(rig)
    assert (stranded.ended, stranded.reversal) == ("no_reply", "pending")
    cut()
    mark = journal_mark(rig)
    blocked = sale(rig)
    assert (blocked.ended, blocked.stan) == ("refused", None), blocked.names
    assert "reversal_unreachable" in blocked.names
    assert "still pending" in blocked.first("refused")["why"]
    assert rig.host.messages(since=mark) == [], "nothing reached the host"
    restore()
    assert_reversed_before_the_next_sale(rig, stranded, sale(rig))


@pytest.mark.scenario("P3")
def test_p3_lost_reply_is_reversed_with_98_before_the_next_sale(rig):
    rig.host.drop_reply("sale", times=1)

    outcome = sale(rig)
    following = sale(rig)

    assert_reversed(rig, outcome, "timeout", "98")
    assert following.ended == "approved"
    assert wire_order(rig) == [("0200", outcome.stan), ("0400", outcome.stan), ("0200", following.stan)]
    assert financial_wire(rig, outcome.stan) == [("in", "0200", None), ("in", "0400", "98"), ("out", "0410", "00")]
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P4")
def test_p4_late_reply_is_ignored_and_the_sale_reversed(rig):
    rig.host.delay("sale", ms=LATE_MS, times=1)
    # A harmless action (the card is already in) that fires when the late 0210 leaves the host.
    rig.when(host="0210", direction="out").do("card_insert", card=CARD)
    mark = rig.terminal.mark()

    outcome = sale(rig)
    rig.firings(1)

    assert_reversed(rig, outcome, "timeout", "98")
    assert "approved" not in [e.name for e in rig.terminal.events(mark)], "the late approval was ignored"
    status = rig.terminal.status()
    assert (status["records"], status["reversal"]) == ("0", "none")
    assert financial_wire(rig, outcome.stan) == [
        ("in", "0200", None),
        ("in", "0400", "98"),
        ("out", "0410", "00"),
        ("out", "0210", "00"),
    ]
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P5")
def test_p5_request_dropped_before_the_host_is_reversed_as_unknown_with_25(rig_with):
    # The terminal's declared policy takes 25 (original not found) as a delivered reversal.
    rig = rig_with('policy.reversal_success_codes=["00","12","25"]')
    rig.host.drop_request("sale", times=1)

    outcome = sale(rig)

    assert_reversed(rig, outcome, "timeout", "98")
    assert outcome.first("reversal_done")["rc"] == "25"
    assert financial_wire(rig, outcome.stan) == [("in", "0200", None), ("in", "0400", "98"), ("out", "0410", "25")]
    assert rig.host.entry(outcome.stan) is None, "no ledger effect"
    assert [k["stan"] for k in rig.host.ledger()["orphan_reversals"]] == [outcome.stan]
    assert_nothing_charged(rig, outcome.stan)


@pytest.mark.scenario("P7")
def test_p7_bad_mac_on_approval_is_reversed_with_a0_and_the_auth_code_after_signing_on(rig):
    rig.host.corrupt_mac("sale", times=1)

    outcome = sale(rig)

    [reply] = rig.host.messages("0210", "out")
    [reversal] = assert_reversed(rig, outcome, "mac_error", "A0", auth=reply["fields"]["38"])
    signons = [m["seq"] for m in received(rig, "0800")]
    assert len(signons) == 2 and reply["seq"] < signons[1] < reversal["seq"], "signs on again before the 0400"
    assert "signon_ok" in outcome.names
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P9")
@pytest.mark.parametrize("altered, field", [("stan", "11"), ("tid", "41"), ("amount", "4")])
def test_p9_reply_with_a_wrong_field_is_reversed_with_06(rig, altered, field):
    rig.host.alter("sale", altered, times=1)

    outcome = sale(rig)

    assert outcome.first("reply_mismatch")["field"] == field
    assert_reversed(rig, outcome, "reply_mismatch", "06")
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P11")
def test_p11_reversal_whose_reply_is_lost_is_retried_and_applied_once(rig):
    rig.host.drop_reply("sale", times=1)
    rig.host.drop_reply("reversal", times=1)

    outcome = sale(rig)

    reversals = assert_reversed(rig, outcome, "timeout", "98")
    assert len(reversals) == 2, "retried with the same STAN"
    assert outcome.first("reversal_rejected")["attempt"] == "1"
    assert rig.host.entry(outcome.stan)["reversal_requests"] == 2
    assert_reversed_once_at_the_host(rig, outcome.stan)


@pytest.mark.scenario("P12")
@pytest.mark.parametrize("policy, attempts", [("drop_and_notify", 3), ("keep_and_block", 2)])
def test_p12_reversal_refused_n_times_fails_under_the_declared_policy_and_stays_unresolved(rig_with, policy, attempts):
    rig = rig_with(f"policy.reversal_attempts={attempts}", f'policy.exhaustion="{policy}"')
    rig.host.drop_reply("sale", times=1)
    rig.host.respond("reversal", "96")

    outcome = sale(rig)

    assert (outcome.ended, outcome.reversal) == ("no_reply", "failed")
    assert outcome.first("reversal_failed")["policy"] == policy
    rejected = [(e["attempt"], e["limit"]) for e in outcome.events if e.name == "reversal_rejected"]
    assert rejected == [(str(n), str(attempts)) for n in range(1, attempts + 1)]
    assert len(assert_0400s_copy_the_0200(rig, outcome.stan, "98")) == attempts
    assert [m["fields"]["39"] for m in rig.host.messages("0410", "out")] == ["96"] * attempts
    assert rig.host.net(outcome.stan) == AMOUNT, "the host still holds the money"
    measure_reversal_latency(rig, outcome, end="reversal_failed", name="reversal_exhaustion_latency")
    verdict = rig.check()
    assert not verdict.passed and verdict.violations == [], str(verdict)
    assert [u["stan"] for u in verdict.unresolved] == [outcome.stan], "reported as unresolved, never as a pass"

    kept = policy == "keep_and_block"
    assert outcome.status["reversal"] == (f"{outcome.stan}/98/{attempts}/failed" if kept else "none")
    mark = journal_mark(rig)
    following = sale(rig)
    assert following.ended == ("refused" if kept else "approved")
    if kept:
        assert "blocked" in following.first("refused")["why"]
        assert rig.host.messages(since=mark) == [], "a blocked terminal sends nothing"


@pytest.mark.scenario("P13")
def test_p13_no_sale_goes_online_while_a_reversal_is_pending_and_the_host_refuses_connections(rig_with):
    rig = rig_with(LAZY)
    assert_the_reversal_goes_before_the_next_sale(
        rig,
        cut=lambda: rig.host.settings(maintenance=True),
        restore=lambda: rig.host.settings(maintenance=False),
    )


@pytest.mark.scenario("P14")
def test_p14_pending_reversal_survives_a_power_cycle_and_goes_before_the_next_sale(rig_with):
    rig = rig_with(LAZY, "policy.reversal_at_boot=false")
    rig.host.drop_reply("sale", times=1)
    stranded = sale(rig)
    assert stranded.reversal == "pending"

    mark = rig.terminal.mark()
    rig.power.off()
    rig.terminal.boot()

    assert ("reversal_pending", stranded.stan) in [(e.name, e["stan"]) for e in rig.terminal.events(mark)]
    assert rig.terminal.status()["reversal"].startswith(f"{stranded.stan}/98/"), "still pending after boot"
    assert_reversed_before_the_next_sale(rig, stranded, sale(rig))


@pytest.mark.scenario("P16")
def test_p16_settlement_sends_the_pending_reversal_first_and_balances(rig_with):
    rig = rig_with(LAZY)
    kept = sale(rig)
    rig.host.drop_reply("sale", times=1)
    lost = sale(rig)
    assert (kept.ended, lost.reversal) == ("approved", "pending")

    settlement = rig.terminal.settle()

    settled = settlement.first("settled")
    assert settlement.ended == "settled", settlement.names
    assert (settled["count"], settled["amount"], settled["balanced"]) == ("1", str(AMOUNT), "yes")
    assert [mti for mti, _ in wire_order(rig)][-2:] == ["0400", "0500"], "the 0400 goes first"
    assert_0400s_copy_the_0200(rig, lost.stan, "98")
    [booked] = rig.host.ledger()["settlements"]
    assert booked["terminal_totals"] == booked["host_totals"] == [1, AMOUNT], "totals = committed approvals"
    assert rig.host.net(kept.stan) == AMOUNT
    assert_reversed_once_at_the_host(rig, lost.stan)
