"""The patient caller: presses nothing, listens to every message, and still ends on the
path the README promises, with an announcement longer than a FastAGI command's timeout
live and no handler failure. The synthesized sentences are spoken fast (FAST_SPEECH): what
is checked is that each is heard and where the call ends, not how long the words take;
the announcement is audio of its full length.

A prompt's FastAGI command lasts as long as its audio; before the timeouts followed the
audio, every caller who listened to a message longer than the 10-second command timeout
fell out of the IVR to the dialplan's fallback (the KCC), also on a closed day.
Assertions come from Asterisk's side (BereikPlayed user events, DialBegin, its log) and
the rows the call left.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan.asterisk import Installation
from tests.support.ivr import (
    ANNOUNCEMENT_SECONDS,
    FAST_SPEECH,
    MENU,
    TEAM,
    WORKDAYS,
    closed_today,
    long_announcement,
    played,
)
from tests.support.mail import Smtp

# Long enough for the announcement, every prompt and the waits; the exchange ends the
# call (goodbye) or the KCC answers well before.
HOLD_MS = 150_000


def _phones() -> list[Phone]:
    return [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]


def no_fallback_and_no_failure(ex: Exchange) -> None:
    asterisk_log = (ex.host_instance / "log" / "messages.log").read_text(errors="replace")
    assert "unavailable" not in asterisk_log, "a call took the dialplan's fallback"
    serve_log = ex.serve_log.read_text(errors="replace")
    # The FastAGI server logs "[<uniqueid>] <handler> failed: <error>" or "... crashed".
    assert not re.search(r"\] \w+ (failed: |crashed)", serve_log), serve_log[-2000:]
    failures = [
        line
        for line in ex.http_get("/metrics").splitlines()
        if line.startswith("bereik_agi_failures_total{") and not line.endswith(" 0.0")
    ]
    assert failures == []


@pytest.fixture
def open_exchange(installation: Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(
        installation, tmp_path, phones=_phones(), teams_toml=TEAM, extra_toml=MENU + FAST_SPEECH
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        yield ex


async def test_a_patient_caller_on_an_open_day_hears_the_whole_outage_and_reaches_the_kcc(
    open_exchange: Exchange,
) -> None:
    ex = open_exchange
    long_announcement(ex, "all")
    # The KCC agent answers and hangs up a second later, which ends the call: the caller
    # stays on as long as the exchange keeps them (before, a fixed 85 s outlasted it all).
    ex.agent_phone("2001", ring_ms=300, talk_ms=1000)
    async with ex.ami_events() as ami:
        result = await ex.call("14070", caller="0644444401", hold_ms=HOLD_MS, timeout_s=200)
        assert result.returncode == 0, result.stderr
        caller = ami.matching("Newchannel", CallerIDNum="0644444401")[0]["Uniqueid"]
        heard = played(ami, caller, "announcement")
        assert len(heard) == 1 and int(heard[0]["Endpos"]) >= 8000 * ANNOUNCEMENT_SECONDS - 800
        # Asked twice, no key: the KCC, as the README promises, chosen by the IVR itself.
        assert len(played(ami, caller, "menu")) == 2 and played(ami, caller, "no_choice")
        rung = [e.get("DestChannel", "") for e in ami.matching("DialBegin")]
        assert any(channel.startswith("PJSIP/2001-") for channel in rung), rung
    assert [r.route for r in ex.rows("SELECT route FROM calls")] == ["kcc"]
    no_fallback_and_no_failure(ex)


async def test_a_patient_caller_to_a_team_nobody_answers_gets_a_hopper_on_their_number(
    open_exchange: Exchange,
) -> None:
    ex = open_exchange
    long_announcement(ex, "team:vergunningen")
    smtp = Smtp(ex.ports.smtp)
    smtp.start()
    try:
        ex.phone("3001", mode="noanswer")
        result = await ex.call("7001", caller="0644444402", hold_ms=HOLD_MS, timeout_s=200)
        assert result.returncode == 0, result.stderr
        # The offer: "press 1 to confirm or 2 for another number"; no key confirms.
        rows = await until(lambda: ex.rows("SELECT team_id, caller, reason FROM hoppers"))
        assert [(r.team_id, r.caller, r.reason) for r in rows] == [
            ("vergunningen", "0644444402", "no_answer")
        ]
        outcomes = await until(lambda: ex.rows("SELECT outcome FROM calls WHERE outcome != ''"))
        assert [r.outcome for r in outcomes] == ["hopper"]
        no_fallback_and_no_failure(ex)
    finally:
        smtp.stop()


async def _closed_patient_call(ex: Exchange, caller: str) -> dict[str, str]:
    """A patient call to 14070 on a closed day; returns the 'closed' message's event."""
    long_announcement(ex, "all")
    ex.phone("2001")
    async with ex.ami_events() as ami:
        result = await ex.call("14070", caller=caller, hold_ms=HOLD_MS, timeout_s=200)
        assert result.returncode == 0, result.stderr
        uniqueid = ami.matching("Newchannel", CallerIDNum=caller)[0]["Uniqueid"]
        for what in ("announcement", "closed", "hours", "callback_offer", "goodbye"):
            assert played(ami, uniqueid, what), f"the caller did not hear {what}"
        assert not ami.matching("DialBegin", CallerIDNum=caller)  # nobody was rung
        closed = played(ami, uniqueid, "closed")[0]
    assert [r.route for r in ex.rows("SELECT route FROM calls")] == ["closed"]
    assert ex.rows("SELECT id FROM hoppers") == []  # no key, no callback request
    no_fallback_and_no_failure(ex)
    return closed


async def test_a_patient_caller_on_a_closed_day_hears_why_the_hours_and_the_offer_then_goodbye(
    installation: Installation, tmp_path: Path
) -> None:
    hours = closed_today("verhuizing")
    with exchange(
        installation, tmp_path, phones=_phones(), teams_toml=TEAM, extra_toml=MENU + FAST_SPEECH,
        hours_toml=hours,
    ) as ex:  # fmt: skip
        ex.start_asterisk()
        ex.start_serve()
        closed = await _closed_patient_call(ex, "0644444403")
        assert closed["Id"] == "closed_period"


async def test_a_patient_caller_on_kings_day_hears_the_holiday_closure_then_goodbye(
    installation: Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tuesday 27 April 2027, 10:00: a working day's hours, but King's Day.
    monkeypatch.setenv("BEREIK_TEST_MODE", "1")
    monkeypatch.setenv("BEREIK_TEST_CLOCK", "2027-04-27T10:00:00+02:00")
    with exchange(
        installation, tmp_path, phones=_phones(), teams_toml=TEAM, extra_toml=MENU + FAST_SPEECH,
        hours_toml=WORKDAYS,
    ) as ex:  # fmt: skip
        ex.start_asterisk()
        ex.start_serve()
        closed = await _closed_patient_call(ex, "0644444404")
        assert closed["Id"] == "holiday"
