"""Features proven end to end that earlier tests covered only in unit tests or in part:
holidays and closures deciding a real call under the test clock, a completed attended
transfer, feature codes by phone,
the weekly mail at the SMTP server, the retention purge, acquisitie out of the norm and
click-to-call's failed and cancelled outcomes from the browser's button.

Real Asterisk, sipp phones and callers, `bereik serve`, aiosmtpd and Chromium throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from cti.reports.render import TEAM_ROW
from dialplan import asterisk
from dialplan.clock import CLOCK_VARIABLE, MODE_VARIABLE
from tests.support.api import api
from tests.support.backends import on_both_backends
from tests.support.browser import chromium, sign_in
from tests.support.ivr import (
    FAST_SPEECH,
    MENU,
    TEAM,
    WORKDAYS,
    announce,
    long_announcement,
    played,
)
from tests.support.mail import Smtp
from tests.support.users import add_users, api_tokens
from tests.support.users import sign_in as sign_in_form


def _phones(*extensions: str) -> list[Phone]:
    return [Phone(extension, free_port()) for extension in extensions]


@contextlib.contextmanager
def team_exchange(
    installation: asterisk.Installation, tmp_path: Path, serve: bool = True, **kwargs: Any
) -> Iterator[Exchange]:
    """Asterisk (and `bereik serve`) with KCC Anna (2001) and Vergunningen's Carla (3001)."""
    with exchange(
        installation, tmp_path, phones=_phones("2001", "3001"), teams_toml=TEAM, **kwargs
    ) as ex:
        ex.start_asterisk()
        if serve:
            ex.start_serve()
        yield ex


def restart_serve_at(ex: Exchange, moment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bereik serve` again, its clock set to `moment` (test mode): the clock is read at start."""
    ex.stop_serve()
    monkeypatch.setenv(MODE_VARIABLE, "1")
    monkeypatch.setenv(CLOCK_VARIABLE, moment)
    ex.start_serve()


# Holidays and closures ---------------------------------------------------------------------

# Working days; Good Friday kept open (the package closes it), a training on the Tuesday
# after Easter from 13:00. Easter Monday is closed by the computed calendar alone.
HOLIDAY_HOURS = (
    WORKDAYS
    + """holidays_open = ["Good Friday"]

[[hours.closed]]
date = 2027-03-30
start = "13:00"
end = "17:00"
reason = "training"
"""
)
# The clock jumps four months ahead of the calls' real timestamps; keep their rows from
# the retention purge (it runs on the exchange's clock) so the test can read them.
KEEP_CALLS = """
[retention]
call_days = 3650
"""


async def test_good_friday_configured_open_easter_monday_and_a_training_afternoon_closed(
    installation: asterisk.Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spoken fast: the closed callers sit through the closed message, the hours and the
    # offer; which closure they heard (its id) is checked, not the words.
    with team_exchange(
        installation,
        tmp_path,
        serve=False,
        extra_toml=MENU + KEEP_CALLS + FAST_SPEECH,
        hours_toml=HOLIDAY_HOURS,
    ) as ex:
        # Carla answers and hangs up a second later, which ends the open day's call.
        ex.agent_phone("3001", ring_ms=300, talk_ms=1000)
        async with ex.ami_events() as ami:
            # Good Friday 26 March 2027, 10:00: open by configuration; key 1 rings the team.
            restart_serve_at(ex, "2027-03-26T10:00:00+01:00", monkeypatch)
            result = await ex.call("14070", caller="0644444411", keys="1", hold_ms=12_000)
            assert result.returncode == 0, result.stderr
            await ami.wait_for("DialBegin", CallerIDNum="0644444411")
            answered = "SELECT id FROM calls WHERE outcome = 'answered_team'"
            await until(lambda: ex.rows(answered))  # recorded before the next restart
            # Easter Monday 29 March 2027 (computed) and Tuesday 30 March at 14:00 (the
            # training): closed, each with its own reason, and nobody is rung.
            for moment, caller in (
                ("2027-03-29T10:00:00+02:00", "0644444412"),
                ("2027-03-30T14:00:00+02:00", "0644444413"),
            ):
                restart_serve_at(ex, moment, monkeypatch)
                result = await ex.call("14070", caller=caller, hold_ms=60_000, timeout_s=90)
                assert result.returncode == 0, result.stderr
                assert not ami.matching("DialBegin", CallerIDNum=caller)
            closures = {
                caller: [e["Id"] for e in played(ami, uniqueid, "closed")]
                for caller in ("0644444412", "0644444413")
                for uniqueid in [ami.matching("Newchannel", CallerIDNum=caller)[0]["Uniqueid"]]
            }
        assert closures == {"0644444412": ["holiday"], "0644444413": ["closed_period"]}
        routes = ex.rows("SELECT caller, route, outcome FROM calls ORDER BY started_at")
        assert [(r.caller, r.route) for r in routes] == [
            ("0644444411", "team-7001"),
            ("0644444412", "closed"),
            ("0644444413", "closed"),
        ]


# Attended transfer ----------------------------------------------------------------------------


async def test_an_attended_transfer_the_agent_completes_bridges_the_citizen_with_the_member(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with team_exchange(installation, tmp_path) as ex:
        # Anna answers and hangs up after 8 s: by then she consulted the team, Carla answered,
        # and hanging up completes the transfer (as putting down the handset does).
        ex.agent_phone("2001", ring_ms=300, talk_ms=8000)
        ex.phone("3001", ring_ms=500)
        async with ex.ami_events() as ami:
            call = asyncio.create_task(
                ex.call("14070", caller="0644444431", hold_ms=20_000, timeout_s=60)
            )
            answered = await ami.wait_for(
                "DialEnd", DialStatus="ANSWER",
                where=lambda e: e.get("DestChannel", "").startswith("PJSIP/2001-"),
            )  # fmt: skip
            # The phone's transfer key: consult the team number (features.conf atxfer).
            await ami.client.action(
                {"Action": "Atxfer", "Channel": answered["DestChannel"], "Exten": "7001",
                 "Context": "from-internal"}
            )  # fmt: skip
            transfer = await ami.wait_for("AttendedTransfer", timeout=20)
            assert transfer["Result"] == "Success"
            # Anna is gone: the citizen and Carla talk (the team number's Local channel between).
            await until(lambda: connected(ex, answered["Channel"], "PJSIP/3001-"), timeout=10)
            assert not connected(ex, answered["Channel"], "PJSIP/2001-")
            result = await call
            assert result.returncode == 0, result.stderr
        calls = await until(
            lambda: ex.rows("SELECT answered_by, outcome, team_id, agent FROM calls "
                            "WHERE outcome != ''")
        )  # fmt: skip
        assert [tuple(c) for c in calls] == [("kcc", "answered_team", "vergunningen", "3001")]
        assert ex.rows("SELECT id FROM hoppers") == []


def connected(ex: Exchange, channel: str, other_prefix: str) -> bool:
    """Whether `channel` talks to a channel named other_prefix...: through Asterisk's bridges,
    and through the two halves of a Local channel (the team number is dialled as one)."""
    links: dict[str, set[str]] = {}
    for line in ex.cli("bridge show all").splitlines()[1:]:
        if not line.split():
            continue
        members = re.findall(r"^Channel: (\S+)", ex.cli(f"bridge show {line.split()[0]}"), re.M)
        for member in members:
            links.setdefault(member, set()).update(members)
            if member.startswith("Local/"):
                half = member[:-1] + ("2" if member.endswith(";1") else "1")
                links[member].add(half)
                links.setdefault(half, set()).add(member)
    seen, todo = set(), [channel]
    while todo:
        current = todo.pop()
        if current.startswith(other_prefix):
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(links.get(current, ()))
    return False


# Feature codes by phone ----------------------------------------------------------------------


async def test_star22_and_star21_on_the_members_phone_show_on_the_team_screen_and_in_the_audit_log(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with team_exchange(installation, tmp_path) as ex:
        await add_users(ex, [("carla", "member", "vergunningen", "3001")])
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in_form(http, ex, "carla")

            async def team_screen_says() -> str:
                page = await (await http.get(ex.url("/team"))).text()
                return page.split('id="presence-state">', 1)[1].split("<", 1)[0]

            assert await team_screen_says() == "Aanwezig"
            for code, state, shown in (("*22", False, "Afwezig"), ("*21", True, "Aanwezig")):
                result = await ex.call(code, from_phone="3001", hold_ms=6000, key_delay_ms=100)
                assert result.returncode == 0, result.stderr
                row = ex.rows("SELECT present, changed_by FROM presence WHERE extension = '3001'")
                assert [(bool(r.present), r.changed_by) for r in row] == [(state, "phone:3001")]
                assert await team_screen_says() == shown
        audit = ex.rows(
            "SELECT actor, object_id, detail FROM audit_log WHERE action = 'presence' ORDER BY id"
        )
        assert [(a.actor, a.object_id, a.detail) for a in audit] == [
            ("phone:3001", "3001", "absent"),
            ("phone:3001", "3001", "present"),
        ]


# The weekly report mail --------------------------------------------------------------------


@on_both_backends
async def test_the_weekly_report_arrives_at_the_team_leads_mailbox(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    team = TEAM + 'lead_mailbox = "leiding.vergunningen@example.org"\n'
    with exchange(installation, tmp_path, phones=_phones("2001", "3001"), teams_toml=team) as ex:
        smtp = Smtp(ex.ports.smtp)
        mailbox = smtp.start()
        try:
            ex.start_serve()  # the figures need no Asterisk; the worker runs at start
            mails = await mailbox.wait(1, timeout=60)
        finally:
            smtp.stop()
        last_week = (datetime.now(ZoneInfo("Europe/Amsterdam")) - timedelta(days=7)).isocalendar()
        week = f"{last_week.year}-W{last_week.week:02d}"
        assert [(m["To"], m["Subject"]) for m in mails] == [
            ("leiding.vergunningen@example.org", f"Stuurinformatie Vergunningen, week {week}")
        ]
        # Marked sent once the server took it (a moment after it arrived).
        sent = await until(lambda: ex.rows("SELECT key FROM outbox WHERE sent_at IS NOT NULL"))
        assert [r.key for r in sent] == [f"weekly:vergunningen:{week}"]
        assert ex.rows("SELECT id FROM outbox WHERE sent_at IS NULL") == []


# Retention ----------------------------------------------------------------------------------

RETENTION = """
[retention]
closed_hopper_days = 30
call_days = 30
sent_mail_days = 14
announcement_days = 30
"""


@on_both_backends
async def test_the_purge_keeps_everything_until_its_term_then_rows_mails_and_audio_go(
    installation: asterisk.Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spoken fast: the caller sits through the callback offer; its rows are what is checked.
    with team_exchange(installation, tmp_path, extra_toml=RETENTION + FAST_SPEECH) as ex:
        smtp = Smtp(ex.ports.smtp)
        mailbox = smtp.start()
        try:
            # A call nobody answers: a calls row, a hopper, its mail sent to the group mailbox.
            ex.phone("3001", mode="noanswer")
            result = await ex.call("7001", caller="0644444421", hold_ms=30_000, timeout_s=60)
            assert result.returncode == 0, result.stderr
            await mailbox.wait(1)
        finally:
            smtp.stop()
        await until(lambda: ex.rows("SELECT id FROM outbox WHERE sent_at IS NOT NULL"))
        [hopper] = ex.rows("SELECT id FROM hoppers")
        tokens = await api_tokens(ex, [("carla", "member", "vergunningen", "3001")])
        status, body = await api(
            ex, "POST", f"/api/hoppers/{hopper.id}/close", tokens["carla"],
            {"reason": "solved_by_email"},
        )  # fmt: skip
        assert status == 200, body
        # An outage message uploaded as audio, ended now.
        long_announcement(ex, "all")
        [announcement] = ex.rows("SELECT id, audio FROM announcements")
        announce(ex, "--end", str(announcement.id))
        wav = ex.host_instance / "sounds" / "announcements" / f"{announcement.audio}.wav"
        assert wav.exists()

        def kept() -> dict[str, int]:
            return {
                table: ex.rows(f"SELECT count(*) AS n FROM {table}")[0].n
                for table in ("calls", "hoppers", "outbox", "announcements")
            }

        def purges() -> list[str]:
            return [
                r.detail
                for r in ex.rows("SELECT detail FROM audit_log WHERE action = 'purge' ORDER BY id")
            ]

        everything = kept()
        assert everything == {"calls": 1, "hoppers": 1, "outbox": 1, "announcements": 1}
        now = datetime.now(UTC)
        # 15 days on: only the sent mail is past its term (14 days).
        restart_serve_at(ex, (now + timedelta(days=15)).isoformat(), monkeypatch)
        await until(lambda: len(purges()) == 2, timeout=30)  # the start's purge and this one
        assert kept() == {**everything, "outbox": 0}
        assert wav.exists()
        # 31 days on: the call, the closed hopper and the ended announcement with its audio.
        restart_serve_at(ex, (now + timedelta(days=31)).isoformat(), monkeypatch)
        await until(lambda: len(purges()) == 3, timeout=30)
        assert kept() == {"calls": 0, "hoppers": 0, "outbox": 0, "announcements": 0}
        assert not wav.exists()
        assert "hoppers=1 calls=1" in purges()[-1] and "announcements=1" in purges()[-1]


# Acquisitie ---------------------------------------------------------------------------------


def norm_ratio(ex: Exchange, team: str) -> str | None:
    prefix = f'bereik_service_norm_ratio{{team="{team}",window="today"}} '
    for line in ex.http_get("/metrics").splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix)
    return None


def report_csv(ex: Exchange, period: str, team: str) -> str:
    """`bereik report` as a team lead runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bereik", "report", "--config", str(ex.config_path),
         "--period", period, "--team", team, "--format", "csv"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    ).stdout  # fmt: skip


@on_both_backends
async def test_an_answered_call_categorised_acquisitie_is_out_of_the_norm_and_the_report(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with team_exchange(installation, tmp_path) as ex:
        tokens = await api_tokens(ex, [("anna", "agent", "", "2001")])
        # A sales call the KCC answers; the agent registers it as acquisitie.
        answering = ex.phone("2001", ring_ms=300)
        result = await ex.call("14070", caller="0201234567", hold_ms=3000, key_delay_ms=200)
        assert result.returncode == 0, result.stderr
        [sales] = await until(
            lambda: ex.rows("SELECT uniqueid FROM calls WHERE outcome = 'answered_kcc'")
        )
        status, body = await api(
            ex, "POST", "/api/agent/category", tokens["anna"],
            {"call": sales.uniqueid, "category": "acquisitie"},
        )  # fmt: skip
        assert status == 200, body
        # A citizen gives up after 8 s of ringing: missed.
        answering.kill()
        answering.wait()
        ex.phone("2001", mode="noanswer")
        result = await ex.call("14070", caller="0612345678", hold_ms=8000, key_delay_ms=200)
        assert result.returncode == 0, result.stderr
        await until(lambda: ex.rows("SELECT id FROM calls WHERE outcome = 'abandoned'"))
        # 0 met of 1 decided; counting the sales call would make it 1 of 2.
        assert await until(lambda: norm_ratio(ex, "kcc"), timeout=30) == "0.0"
        week = datetime.now(ZoneInfo("Europe/Amsterdam")).isocalendar()
        report = report_csv(ex, f"{week.year}-W{week.week:02d}", "kcc")
        figures = {
            row["figure"]: row["value"]
            for row in csv.DictReader(io.StringIO(report))
            if row["employee"] == TEAM_ROW
        }
        # The sales call is answered and categorised, but decides nothing in the norm: the
        # report's norm is the board's, 0 met of 1 decided (the caller who gave up).
        assert figures["calls_answered"] == "1" and figures["category:acquisitie"] == "1"
        assert figures["share_within_norm"] == "0.0000"


# Click-to-call from the browser: failed and cancelled ---------------------------------------

CALLBACKS = """
[callbacks]
member_ring_seconds = 10
ring_seconds = 20
check_seconds = 1
"""


def attempts(ex: Exchange) -> list[str]:
    return [r.outcome for r in ex.rows("SELECT outcome FROM callback_attempts ORDER BY id")]


async def test_the_call_back_button_rings_the_member_and_records_cancelled_and_failed(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with team_exchange(installation, tmp_path, extra_toml=CALLBACKS) as ex:
        await add_users(ex, [("carla", "member", "vergunningen", "3001")])
        tokens = await api_tokens(ex, [("kcc-anna", "agent", "", "2001")])
        status, body = await api(
            ex, "POST", "/api/hoppers", tokens["kcc-anna"],
            {"team": "vergunningen", "caller": "0612345678", "reason": "manual"},
        )  # fmt: skip
        assert status == 201, body
        hopper = body["id"]
        # Carla's phone answers and she hangs up after 2 s, before the citizen answers.
        ex.agent_phone("3001", ring_ms=300, talk_ms=2000)
        carla = ex.sipp_processes[-1]
        async with chromium() as browser:
            page = await sign_in(browser, ex, "carla")
            await page.goto(ex.url(f"/team/hoppers/{hopper}"))
            # 1. The citizen's phone rings on: Carla gave up first, cancelled.
            ex.citizen("noanswer")
            await page.click(".callback-btn")
            await page.wait_for_selector("#team-status:has-text('Uw toestel gaat over')")
            await until(lambda: attempts(ex) == ["cancelled"], timeout=30)
            # 2. Carla's phone rings out (member_ring_seconds): the call never started, failed.
            carla.kill()
            carla.wait()
            ex.phone("3001", mode="noanswer")
            await page.click(".callback-btn")
            await until(lambda: attempts(ex) == ["cancelled", "failed"], timeout=40)
            await page.reload()
            history = await page.inner_text("table")
            assert "cancelled" in history and "failed" in history
        row = ex.rows("SELECT status FROM hoppers WHERE id = :id", id=hopper)[0]
        assert row.status == "open"  # neither reached the citizen: the callback is still owed
