"""Team numbers, transfers and hoppers, end to end: real Asterisk, sipp phones and callers,
`bereik serve`, and a real SMTP server (aiosmtpd) standing in for the group mailboxes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.backends import on_both_backends
from tests.support.ivr import FAST_SPEECH
from tests.support.mail import Smtp
from tests.support.teams import TEAM_TOML, transfer_phone
from tests.support.users import api_tokens

CITIZEN = "0612345678"


def make_exchange(
    installation: asterisk.Installation,
    tmp_path: Path,
    strategy: str = "ringall",
    serve: bool = True,
    hours_toml: str | None = None,
    extra_toml: str = "",
) -> Iterator[Exchange]:
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Vergunningen Carla"),
        Phone("3002", free_port(), "Vergunningen Daan"),
    ]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        teams_toml=TEAM_TOML.format(strategy=strategy),
        hours_toml=hours_toml,
        extra_toml=extra_toml,
    ) as ex:
        ex.start_asterisk()
        if serve:
            ex.start_serve()
        yield ex


@pytest.fixture
def team(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    yield from make_exchange(installation, tmp_path)


@pytest.fixture
def team_fast_speech(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """The team exchange with its sentences spoken fast (FAST_SPEECH), for a caller who sits
    through the callback offer and the goodbye where the hopper is what is checked."""
    yield from make_exchange(installation, tmp_path, extra_toml=FAST_SPEECH)


@pytest.fixture
def smtp(team: Exchange) -> Iterator[Smtp]:
    server = Smtp(team.ports.smtp)
    yield server
    server.stop()


def hoppers(ex: Exchange) -> list[Any]:
    return ex.rows("SELECT * FROM hoppers ORDER BY id")


def team_announcement(ex: Exchange, text: str) -> int:
    """An operator puts a message live for team vergunningen with the CLI."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bereik",
            "announce",
            text,
            "--kind",
            "outage",
            "--scope",
            "team:vergunningen",
            "--config",
            str(ex.config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split("#")[1].split()[0])


# 1 ----------------------------------------------------------------------------------------


# SQLite only: no hopper is made, and the call's row (the listener's insert-or-skip) is
# on PostgreSQL in test_spine and in the two team tests below that run on both.
async def test_a_member_answers_the_team_number_and_no_hopper_is_made(
    team: Exchange, smtp: Smtp
) -> None:
    mailbox = smtp.start()
    team.phone("3001", ring_ms=500)
    team.phone("3002", mode="noanswer")
    # An operator's message for this team only: heard before the team rings.
    notice = team_announcement(team, "Het loket vergunningen is vandaag dicht.")
    async with team.ami_events() as ami:
        result = await team.call("7001", caller=CITIZEN, hold_ms=6000)
        assert result.returncode == 0, result.stderr
        answered = await ami.wait_for("DialEnd", where=lambda e: e.get("DialStatus") == "ANSWER")
        assert answered["DestChannel"].startswith("PJSIP/3001-")
        # Both present members rang at once (ringall).
        rung = {e["DestChannel"].split("-")[0] for e in ami.matching("DialBegin")}
        assert rung == {"PJSIP/3001", "PJSIP/3002"}
        played = [
            e
            for e in ami.matching("UserEvent", UserEvent="BereikPlayed")
            if e.get("What") == "announcement"
        ]
        assert [int(e["Id"]) for e in played] == [notice]
        assert int(played[0]["Endpos"]) > 8000  # more than a second of it was played
    # The call's end recorded: a hopper (and its mail in the outbox) had one been made, was
    # made before it, in the dialplan after the ringing.
    await until(lambda: team.rows("SELECT outcome FROM calls WHERE outcome <> ''"))
    assert hoppers(team) == []
    assert team.rows("SELECT key FROM outbox WHERE key LIKE 'hopper-%'") == []
    assert mailbox.messages == []


# 2 ----------------------------------------------------------------------------------------


# SQLite only: the hopper's insert and its mail are the same statements on both stores;
# on PostgreSQL the hopper's race (unique index, FOR UPDATE) is in the same-number test
# and the outbox's SKIP LOCKED in the SMTP-down test, both on both stores.
async def test_nobody_answers_makes_a_hopper_and_mails_the_group_mailbox(
    team: Exchange, smtp: Smtp
) -> None:
    mailbox = smtp.start()
    team.phone("3001", mode="noanswer")
    team.phone("3002", mode="noanswer")
    started = time.time()
    # Ring time 5 s, then the offer; the caller presses 1 to confirm.
    result = await team.call("7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=8000)
    assert result.returncode == 0, result.stderr
    rows = await until(lambda: hoppers(team))
    assert len(rows) == 1
    h = rows[0]
    assert (h.team_id, h.caller, h.reason, h.status, h.agent) == (
        "vergunningen",
        CITIZEN,
        "no_answer",
        "open",
        "",
    )
    assert h.counts_for_norm and h.repeat_count == 0
    events = team.rows("SELECT kind FROM hopper_events WHERE hopper_id = :id", id=h.id)
    assert [e.kind for e in events] == ["created"]
    # The call tracker marks the call's outcome when it ends.
    await until(lambda: team.rows("SELECT outcome FROM calls WHERE outcome = 'hopper'"))
    mails = await mailbox.wait(1)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["To"] == "vergunningen@gemeente.example"
    assert CITIZEN in mail["Subject"]
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert CITIZEN in body and "niet opgenomen" in body and "Uiterlijk" in body
    assert time.time() - started < 40
    metrics = team.http_get("/metrics")
    assert 'bereik_hoppers_created_total{reason="no_answer",team="vergunningen"} 1.0' in metrics


# 3 ----------------------------------------------------------------------------------------


# SQLite only: presence rows and the hopper's insert are plain statements on both stores
# (the PostgreSQL-only paths are in the same-number and SMTP-down tests).
async def test_every_member_absent_means_no_ringing_and_straight_to_the_hopper(
    team: Exchange, smtp: Smtp
) -> None:
    smtp.start()
    # Both members sign out with the feature code on their own phone.
    results = await asyncio.gather(
        *(
            team.call("*22", from_phone=member, hold_ms=6000, key_delay_ms=100)
            for member in ("3001", "3002")
        )
    )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    presence = team.rows("SELECT extension, present, changed_by FROM presence ORDER BY 1")
    assert [(p.extension, bool(p.present)) for p in presence] == [("3001", False), ("3002", False)]
    team.phone("3001")
    team.phone("3002")
    async with team.ami_events() as ami:
        # The caller hangs up during the offer: the hopper is still made, on the caller ID.
        result = await team.call("7001", caller=CITIZEN, hold_ms=8000)
        assert result.returncode == 0, result.stderr
        rows = await until(lambda: hoppers(team))
        assert not ami.matching("DialBegin"), "an absent member's phone rang"
    assert (rows[0].reason, rows[0].caller) == ("nobody_present", CITIZEN)


# 4 ----------------------------------------------------------------------------------------


# SQLite only: what it checks (Asterisk's BlindTransfer, the agent on the hopper) is no
# store's SQL; the hopper's insert runs on PostgreSQL in the same-number test.
async def test_blind_transfer_from_a_kcc_agent_names_the_agent_on_the_hopper(
    team_fast_speech: Exchange,
) -> None:
    team = team_fast_speech
    smtp = Smtp(team.ports.smtp)
    smtp.start()
    try:
        transfer_phone(team, "2001", "7001")
        team.phone("3001", mode="noanswer")
        team.phone("3002", mode="busy")
        async with team.ami_events() as ami:
            result = await team.call("14070", caller=CITIZEN, hold_ms=40000, timeout_s=90)
            assert result.returncode == 0, result.stderr
            transfer = await ami.wait_for("BlindTransfer")
            assert transfer["TransfererChannel"].startswith("PJSIP/2001-")
            assert transfer["Extension"] == "7001"
    finally:
        smtp.stop()
    rows = await until(lambda: hoppers(team))
    assert len(rows) == 1
    assert (rows[0].agent, rows[0].reason, rows[0].caller) == ("2001", "no_answer", CITIZEN)


# 5 ----------------------------------------------------------------------------------------


# Both stores: the outbox takes its rows with FOR UPDATE SKIP LOCKED on PostgreSQL (several
# processes share it), not on SQLite; "mailed once" is that SQL's promise.
@on_both_backends
async def test_a_hopper_made_while_smtp_is_down_is_mailed_once_when_it_is_back(
    team: Exchange, smtp: Smtp
) -> None:
    team.phone("3001", mode="busy")
    team.phone("3002", mode="busy")
    # Every member busy; the caller keys another number (2, the number, #).
    result = await team.call(
        "7001",
        caller=CITIZEN,
        keys="2,,0701112233#",
        key_delay_ms=2500,
        hold_ms=10000,
        timeout_s=90,
    )
    assert result.returncode == 0, result.stderr
    rows = await until(lambda: hoppers(team))
    assert (rows[0].caller, rows[0].reason) == ("0701112233", "busy")
    failed = await until(
        lambda: team.rows("SELECT * FROM outbox WHERE attempts >= 1 AND sent_at IS NULL")
    )
    assert failed[0].last_error
    mailbox = smtp.start()
    mails = await mailbox.wait(1, timeout=30)
    # Marked sent: no round selects it again. A round that sent it anyway would do so
    # within the outbox's 1-second poll; no counter of rounds to wait on, so a short wait.
    await until(lambda: team.rows("SELECT id FROM outbox WHERE sent_at IS NOT NULL"))
    await asyncio.sleep(1.5)
    assert len(mails) == 1
    assert "0701112233" in mails[0]["Subject"]
    sent = team.rows("SELECT sent_at, attempts FROM outbox")
    assert len(sent) == 1 and sent[0].sent_at is not None and sent[0].attempts >= 2


# 6 ----------------------------------------------------------------------------------------


# Both stores: linking a repeat takes the open hopper FOR UPDATE on PostgreSQL, and the
# partial unique index (one open hopper per caller and team) is each store's own.
@on_both_backends
async def test_the_same_number_again_while_its_hopper_is_open_is_linked_not_duplicated(
    team: Exchange, smtp: Smtp
) -> None:
    mailbox = smtp.start()
    team.phone("3001", mode="noanswer")
    team.phone("3002", mode="noanswer")
    for _ in range(2):
        result = await team.call("7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=8000)
        assert result.returncode == 0, result.stderr
        await until(lambda: hoppers(team))
    rows = hoppers(team)
    assert len(rows) == 1 and rows[0].repeat_count == 1
    events = team.rows("SELECT kind FROM hopper_events ORDER BY id")
    assert [e.kind for e in events] == ["created", "repeat"]
    mails = await mailbox.wait(2)
    assert [m["Subject"].split(" ")[0] for m in mails] == ["Terugbelverzoek", "Herhaald"]
    # The CLI shows the same: one hopper, one repeat contact.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bereik",
        "hoppers",
        "list",
        "--json",
        "--config",
        str(team.config_path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    data = json.loads(stdout)
    assert [(h["caller"], h["repeat_count"], h["status"]) for h in data] == [(CITIZEN, 1, "open")]


# SQLite only: the same two calls as the same-number test above (which links them on both
# stores); what this one adds, the calls' outcomes and the counters, is no store's SQL.
async def test_a_repeat_contact_is_recorded_as_repeat_and_never_counted_as_abandoned(
    team: Exchange, smtp: Smtp
) -> None:
    smtp.start()
    team.phone("3001", mode="noanswer")
    team.phone("3002", mode="noanswer")
    for expected in (["hopper"], ["hopper", "repeat"]):
        result = await team.call("7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=8000)
        assert result.returncode == 0, result.stderr
        await until(
            lambda expected=expected: (
                [r.outcome for r in team.rows("SELECT outcome FROM calls ORDER BY started_at")]
                == expected
            )
        )
    rows = team.rows("SELECT outcome, team_id FROM calls ORDER BY started_at")
    assert [(r.outcome, r.team_id) for r in rows] == [
        ("hopper", "vergunningen"),
        ("repeat", "vergunningen"),
    ]
    metrics = team.http_get("/metrics")
    abandoned = [
        line
        for line in metrics.splitlines()
        if line.startswith("bereik_calls_abandoned_total{") and not line.endswith(" 0.0")
    ]
    assert abandoned == []
    offered = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("bereik_calls_offered_total{")
    ]
    assert sum(offered) == 2


# Attended transfer ------------------------------------------------------------------------


# SQLite only: no hopper is made; the call's row is on PostgreSQL in other tests.
async def test_an_agents_consult_call_nobody_answers_makes_no_hopper(team: Exchange) -> None:
    team.phone("3001", mode="noanswer")
    team.phone("3002", mode="noanswer")
    async with team.ami_events() as ami:
        # The agent puts the citizen on hold and calls the team number from the phone.
        result = await team.call("7001", from_phone="2001", hold_ms=30000, timeout_s=60)
        assert result.returncode == 0, result.stderr
        assert ami.matching("DialBegin"), "the team was not rung"
        hangup = await ami.wait_for(
            "Hangup", where=lambda e: e.get("Channel", "").startswith("PJSIP/2001-")
        )
        assert hangup["Cause"] == "16"
    # The exchange told the agent and hung up; the agent makes the hopper on the screen.
    assert hoppers(team) == []


# The API path, and the linear strategy ------------------------------------------------------


def api(ex: Exchange, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        ex.url(path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def linear_team(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    # Spoken fast: the caller sits through the offer and the goodbye (the hopper is checked).
    yield from make_exchange(installation, tmp_path, strategy="linear", extra_toml=FAST_SPEECH)


# SQLite only: the hopper API's list, reassign and manual create are the same ORM
# statements on both stores; creating a hopper on PostgreSQL (its unique index, the retry)
# is in the same-number test.
async def test_api_transfer_rings_members_in_order_and_the_hopper_can_be_passed_on(
    linear_team: Exchange,
) -> None:
    ex = linear_team
    tokens = await api_tokens(
        ex,
        [
            ("anna", "agent", "", "2001"),
            ("carla", "member", "vergunningen", "3001"),
            ("bob", "member", "parkeren", ""),
        ],
    )
    ex.phone("2001", ring_ms=300)  # the KCC agent answers the citizen
    ex.phone("3001", mode="noanswer")
    ex.phone("3002", mode="noanswer")
    async with ex.ami_events() as ami:
        caller = asyncio.create_task(ex.call("14070", caller=CITIZEN, hold_ms=40000, timeout_s=90))
        await ami.wait_for("DialEnd", where=lambda e: e.get("DialStatus") == "ANSWER")
        calls = await until(lambda: ex.rows("SELECT id FROM calls"))
        status, body = api(
            ex, "POST", f"/api/calls/{calls[0].id}/transfer", tokens["anna"], {"team": "7001"}
        )
        assert status == 200, body
        first = await ami.wait_for(
            "DialBegin", where=lambda e: e.get("DestChannel", "").startswith("PJSIP/3001-")
        )
        second = await ami.wait_for(
            "DialBegin",
            timeout=20,
            where=lambda e: e.get("DestChannel", "").startswith("PJSIP/3002-"),
        )
        # Linear: 3002 rings only after 3001's ring time is over.
        ended = ami.matching("DialEnd", DestUniqueid=first["DestUniqueid"])
        assert ended and ended[0]["DialStatus"] == "NOANSWER"
        assert ami.events.index(ended[0]) < ami.events.index(second)
        rows = await until(lambda: hoppers(ex), timeout=30)
        result = await caller  # the exchange says goodbye and hangs up
        assert result.returncode == 0, result.stderr
    assert (rows[0].agent, rows[0].reason, rows[0].caller) == ("2001", "no_answer", CITIZEN)

    # The team member sees it; a member of another team does not.
    status, body = api(ex, "GET", "/api/hoppers?team=vergunningen&status=open", tokens["carla"])
    assert status == 200 and [h["id"] for h in body["hoppers"]] == [rows[0].id]
    deadline = body["hoppers"][0]["deadline"]
    assert body["hoppers"][0]["caller"] == CITIZEN
    status, body = api(ex, "GET", "/api/hoppers?team=vergunningen", tokens["bob"])
    assert status == 403 and "error" in body
    status, body = api(ex, "GET", "/api/hoppers?status=nonsense", tokens["carla"])
    assert status == 400 and "error" in body

    # Wrong team: passed to the KCC; the deadline stays, the history says who did it.
    status, body = api(
        ex,
        "POST",
        f"/api/hoppers/{rows[0].id}/reassign",
        tokens["carla"],
        {"team": "kcc", "note": "hoort niet bij ons"},
    )
    assert status == 200, body
    assert body["team"] == "kcc" and body["deadline"] == deadline
    assert [(e["kind"], e["actor"]) for e in body["history"]] == [
        ("created", "exchange"),
        ("reassigned", "carla"),
    ]
    # A manual hopper from the KCC, with a note (e.g. after an unanswered consult call).
    status, body = api(
        ex,
        "POST",
        "/api/hoppers",
        tokens["anna"],
        {"team": "vergunningen", "caller": "070 555 1234", "note": "bouwplan"},
    )
    assert status == 201 and body["caller"] == "0705551234" and body["agent"] == "2001"
    status, body = api(ex, "POST", "/api/hoppers", tokens["anna"], {"team": "nope", "caller": "1"})
    assert status == 400 and "error" in body
    audited = ex.rows("SELECT actor, action FROM audit_log WHERE object_type = 'hopper'")
    assert {(a.actor, a.action) for a in audited} == {
        ("carla", "view"),
        ("carla", "reassign"),
        ("anna", "create"),
    }


# Without bereik serve ----------------------------------------------------------------------


@pytest.fixture
def team_without_serve(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    yield from make_exchange(installation, tmp_path, serve=False)


async def test_without_bereik_serve_the_team_still_rings_and_then_the_kcc_answers(
    team_without_serve: Exchange,
) -> None:
    ex = team_without_serve
    ex.phone("3001", mode="noanswer")
    ex.phone("3002", mode="noanswer")
    ex.phone("2001", ring_ms=300)
    async with ex.ami_events() as ami:
        result = await ex.call("7001", caller=CITIZEN, hold_ms=2000, timeout_s=60)
        assert result.returncode == 0, result.stderr
        rung = [e["DestChannel"].split("-")[0] for e in ami.matching("DialBegin")]
        # Every member (no presence without the database), then the KCC takes the call.
        assert rung == ["PJSIP/3001", "PJSIP/3002", "PJSIP/2001"]
        end = await ami.wait_for(
            "DialEnd", where=lambda e: e.get("DestChannel", "").startswith("PJSIP/2001-")
        )
        assert end["DialStatus"] == "ANSWER"


# Closed ------------------------------------------------------------------------------------

# Open one minute after midnight on weekdays: closed whenever the test runs (but there are
# working days, so the callback clock has a deadline to give).
CLOSED = (
    "\n[hours]\n"
    + "\n".join(f'{day} = "00:00-00:01"' for day in ("mon", "tue", "wed", "thu", "fri"))
    + '\nsat = ""\nsun = ""\n'
)


@pytest.fixture
def closed_team(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    yield from make_exchange(installation, tmp_path, hours_toml=CLOSED)


# SQLite only: the closed path is decided by the clock, not by the store; the hopper's
# insert runs on PostgreSQL in the same-number test.
async def test_outside_opening_hours_the_team_number_rings_nobody_and_takes_a_hopper(
    closed_team: Exchange,
) -> None:
    ex = closed_team
    ex.phone("3001")
    async with ex.ami_events() as ami:
        result = await ex.call("7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=8000)
        assert result.returncode == 0, result.stderr
        rows = await until(lambda: hoppers(ex))
        assert not ami.matching("DialBegin"), "a phone rang while closed"
    assert (rows[0].reason, rows[0].caller, rows[0].team_id) == (
        "after_hours",
        CITIZEN,
        "vergunningen",
    )
