"""The path every call takes: 14070 through FastAGI, and on without it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.exchange import Exchange, exchange, until
from dialplan.asterisk import Installation
from dialplan.render import DROPPED_EVENTS
from tests.support.backends import on_both_backends
from tests.support.ivr import FAST_SPEECH


@on_both_backends
async def test_call_to_14070_runs_the_ivr_handler_and_ends_cleanly(kcc: Exchange) -> None:
    kcc.start_serve()
    kcc.phone("2001")
    async with kcc.ami_events() as ami:
        result = await kcc.call("14070", caller="0701234567")
        assert result.returncode == 0, result.stderr
        hangup = await ami.wait_for("Hangup", where=lambda e: e.get("CallerIDNum") == "0701234567")
    # The listener writes what the call did in batches, in order: once its end is in the
    # row, so is its route (the test's own AMI connection may see the Hangup first).
    ended = "SELECT caller, entry, uniqueid, route FROM calls WHERE ended_at IS NOT NULL"
    calls = await until(lambda: kcc.rows(ended))
    assert [(c.caller, c.entry) for c in calls] == [("0701234567", "14070")]
    assert calls[0].uniqueid == hangup["Uniqueid"]
    assert hangup["Cause"] == "16"  # normal clearing
    # What only the IVR handler does: it records where it sent the call, it is counted as
    # a FastAGI request that ended without failing, and the dialplan fallback was not taken.
    assert calls[0].route == "kcc"
    metrics = kcc.http_get("/metrics")
    assert 'bereik_agi_requests_total{handler="ivr"} 1.0' in metrics
    assert 'bereik_agi_failures_total{handler="ivr"} 0.0' in metrics
    assert kcc.ivr_fallbacks() == []
    await _until_no_channels(kcc)


async def test_without_bereik_serve_the_caller_still_reaches_the_kcc(kcc: Exchange) -> None:
    kcc.phone("2001")  # bereik serve is not started: FastAGI is unreachable
    async with kcc.ami_events() as ami:
        result = await kcc.call("14070", caller="0709999999")
        assert result.returncode == 0, result.stderr
        dial = await ami.wait_for("DialBegin", where=lambda e: e.get("CallerIDNum") == "0709999999")
        assert dial["DestChannel"].startswith("PJSIP/2001-")
        end = await ami.wait_for("DialEnd", DestUniqueid=dial["DestUniqueid"])
        assert end["DialStatus"] == "ANSWER"
    await _until_no_channels(kcc)


async def test_asterisk_sends_bereiks_ami_login_the_call_events_it_reads_and_none_it_drops(
    kcc: Exchange,
) -> None:
    kcc.phone("2001")  # answered and bridged: the call makes every kind of call event
    async with kcc.ami_events() as ami:
        result = await kcc.call("14070", caller="0709999998")
        assert result.returncode == 0, result.stderr
        # The call's last event: what Asterisk sent about it has arrived by then.
        await ami.wait_for("CEL", EventName="LINKEDID_END")
    seen = {event["Event"] for event in ami.events}
    assert {"Newchannel", "DialBegin", "DialEnd", "Hangup", "CEL"} <= seen, seen
    assert not seen & set(DROPPED_EVENTS), seen & set(DROPPED_EVENTS)


# Alone on the machine: ten calls a second is a load of its own.
@pytest.mark.solo
async def test_a_hundred_calls_at_ten_per_second_all_end(kcc: Exchange) -> None:
    kcc.start_serve()
    kcc.phone("2001", ring_ms=100)
    result = await kcc.call("14070", calls=100, rate=10, limit=100, hold_ms=1000, key_delay_ms=100)
    counts = result.counts()
    assert result.returncode == 0, result.stderr
    assert counts["SuccessfulCall(C)"] == 100 and counts["FailedCall(C)"] == 0
    assert kcc.rows("SELECT count(*) AS n FROM calls")[0].n == 100
    await _until_no_channels(kcc)


async def _until_no_channels(exchange: Exchange, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.2)):
        if exchange.active_channels() == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"channels left over:\n{exchange.cli('core show channels')}")


@on_both_backends
async def test_when_no_kcc_agent_answers_the_caller_gets_a_kcc_hopper(
    installation: Installation, tmp_path: Path
) -> None:
    # The smallest exchange (the kcc fixture's), its sentences spoken fast: the caller sits
    # through the callback offer and the goodbye; the hopper is what is checked.
    with exchange(installation, tmp_path, extra_toml=FAST_SPEECH) as kcc:
        kcc.start_asterisk()
        kcc.start_serve()
        kcc.phone("2001", mode="noanswer")
        result = await kcc.call(
            "14070", caller="0703333333", hold_ms=60_000, key_delay_ms=100, timeout_s=120
        )
        assert result.returncode == 0, result.stderr
        hoppers = kcc.rows("SELECT team_id, caller, reason, status FROM hoppers")
        assert [(h.team_id, h.caller, h.reason, h.status) for h in hoppers] == [
            ("kcc", "0703333333", "no_answer", "open")
        ]
        await _until_no_channels(kcc)
