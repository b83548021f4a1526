"""Click-to-call against real Asterisk: the member's sipp phone, then the citizen's sipp phone.

The citizen is a sipp UAS listening on the trunk's contact address (the config's
``asterisk.trunk_contact`` points at ``ex.ports.trunk``), so the exchange really dials
out through the trunk endpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port
from dialplan import asterisk
from tests.support.api import ami_connected, api
from tests.support.backends import on_both_backends
from tests.support.callbacks import CALLBACKS, TEAMS, outcome, seed


@pytest.fixture
def ex(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(
        installation,
        tmp_path,
        phones=[Phone("3001", free_port(), "Piet Vergunningen")],
        kcc_agents=[],
        teams_toml=TEAMS,
        extra_toml=CALLBACKS,
    ) as ex:
        ex.start_asterisk()
        yield ex


def citizen(
    ex: Exchange, mode: str, ring_ms: int = 300, hold_ms: int = 1500
) -> subprocess.Popen[bytes]:
    """A citizen's phone on the trunk: answer (and hang up after hold_ms), noanswer, busy."""
    return ex.citizen(mode, ring_ms, hold_ms)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def no_channels(ex: Exchange, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.2)):
        if ex.active_channels() == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"channels left over:\n{ex.cli('core show channels')}")


@on_both_backends
async def test_click_to_call_busy_then_no_answer_then_reached(ex: Exchange) -> None:
    ex.start_serve()
    ex.phone("3001", ring_ms=200)
    hopper_id, token, other_token = await seed(ex)
    await ami_connected(ex)

    # Another team's member may neither see nor call this hopper.
    assert (await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", other_token))[0] == 403
    assert (await api(ex, "GET", f"/api/hoppers/{hopper_id}", other_token))[0] == 403

    # 1. The citizen's line is busy.
    line = citizen(ex, "busy")
    status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", token)
    assert status == 202, body
    first = await outcome(ex, body["id"])
    assert (first.outcome, first.member, first.extension) == ("busy", "piet", "3001")
    stop(line)
    await no_channels(ex)

    # 2. Nobody picks up: the trunk leg rings for callbacks.ring_seconds (5 s).
    line = citizen(ex, "noanswer")
    status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", token)
    assert status == 202, body
    started = time.monotonic()
    second = await outcome(ex, body["id"])
    assert second.outcome == "no_answer"
    assert time.monotonic() - started >= 4.5
    stop(line)
    await no_channels(ex)

    # Two failed attempts in (at most) one daypart: not yet "unreachable".
    status, body = await api(
        ex, "POST", f"/api/hoppers/{hopper_id}/close", token, {"reason": "unreachable"}
    )
    assert status == 409 and "onbereikbaar" in body["error"]

    # 3. The citizen answers: reached, and the hopper closes within the norm.
    line = citizen(ex, "answer", ring_ms=300, hold_ms=1000)
    async with ex.ami_events() as ami:
        status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", token)
        assert status == 202, body
        third = await outcome(ex, body["id"])
        assert third.outcome == "reached"
        dial = await ami.wait_for("DialBegin", where=lambda e: "trunk" in e.get("DestChannel", ""))
        assert dial["DestCallerIDNum"] == "0612345678" or dial["DestExten"] == "0612345678"
        assert dial["CallerIDNum"] == "14070"  # what the citizen is shown
    await no_channels(ex)
    messages = (ex.workdir / "citizen-answer-messages.log").read_text()
    assert "INVITE sip:0612345678@127.0.0.1" in messages
    assert "<sip:14070@" in messages  # From: the main number

    hopper = ex.rows("SELECT * FROM hoppers WHERE id = :id", id=hopper_id)[0]
    assert (hopper.status, hopper.closing_reason, hopper.closed_by) == ("closed", "reached", "piet")
    assert hopper.within_norm == 1 and hopper.claimed_by == "piet"
    attempts = ex.rows(
        "SELECT outcome FROM callback_attempts WHERE hopper_id = :id ORDER BY id", id=hopper_id
    )
    assert [a.outcome for a in attempts] == ["busy", "no_answer", "reached"]

    # The API shows the attempts and the history; viewing it is audited.
    status, body = await api(ex, "GET", f"/api/hoppers/{hopper_id}", token)
    assert status == 200
    assert [a["outcome"] for a in body["attempts"]] == ["busy", "no_answer", "reached"]
    assert body["within_norm"] is True and body["closing_reason"] == "reached"
    assert [h["kind"] for h in body["history"]].count("attempt") == 6  # started + outcome each
    assert (
        ex.rows(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'view' AND object_id = :id",
            id=str(hopper_id),
        )[0].n
        == 1
    )

    # Closed is closed: no second decision, no new attempt.
    status, body = await api(
        ex, "POST", f"/api/hoppers/{hopper_id}/close", token, {"reason": "solved_by_email"}
    )
    assert status == 409
    assert (await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", token))[0] == 409
    metrics = ex.http_get("/metrics")
    assert 'team="vergunningen",within_norm="true"} 1.0' in metrics


@on_both_backends
async def test_closing_by_hand_needs_a_reason(ex: Exchange) -> None:
    ex.start_serve()
    hopper_id, token, _ = await seed(ex)
    status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/close", token, {})
    assert status == 400 and "reden" in body["error"]
    status, body = await api(
        ex, "POST", f"/api/hoppers/{hopper_id}/close", token, {"reason": "opgelost"}
    )
    assert status == 400
    status, body = await api(
        ex,
        "POST",
        f"/api/hoppers/{hopper_id}/close",
        token,
        {"reason": "answered_other_channel", "note": "was aan de balie"},
    )
    # Nobody tried to call back: an answer elsewhere does not keep the callback promise.
    assert status == 200 and body["within_norm"] is False
    row = ex.rows("SELECT * FROM hoppers WHERE id = :id", id=hopper_id)[0]
    assert (row.status, row.closing_reason, row.closed_by) == (
        "closed",
        "answered_other_channel",
        "piet",
    )
    assert (
        ex.rows(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'close' AND object_id = :id",
            id=str(hopper_id),
        )[0].n
        == 1
    )
