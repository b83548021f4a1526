"""The IVR on 14070 against real Asterisk and sipp callers pressing RFC 2833 keys.

Every assertion is taken from Asterisk's side: DialBegin (which phone rang), UserEvent
BereikPlayed (sent on the channel right after Asterisk answered the STREAM FILE, with
the number of samples it played), and the rows the call left in the database.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port
from cti.store.db import create_engine, sessions
from cti.users.service import create_user, issue_token
from dialplan.asterisk import Installation
from tests.support.ivr import announce, closed_today, played

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 10
mailbox = "vergunningen@example.org"

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
members = ["3201"]
ring_seconds = 10
mailbox = "parkeren@example.org"
"""

# Short texts: the keys come 1.5 s after the answer, and 1.2 s apart.
MENU = """
[exchange]
website = "www.gemeente.nl"

[operators]
pin = "804613"

[menu]
greeting = "Welkom."
prompt = "Maak een keuze."
timeout_seconds = 3

[[menu.options]]
key = "1"
label = "Vergunningen"
team = "vergunningen"

[[menu.options]]
key = "2"
label = "Melding"
info = "Gebruik de MOR app. Toets 0 voor het KCC."

[[menu.options]]
key = "3"
label = "Overig"
prompt = "Parkeren, toets 1."

[[menu.options.submenu]]
key = "1"
label = "Parkeren"
team = "parkeren"
"""


def _phones() -> list[Phone]:
    return [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Vergunningen Carla"),
        Phone("3201", free_port(), "Parkeren Femke"),
    ]


@pytest.fixture
def ivr(installation: Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(
        installation, tmp_path, phones=_phones(), teams_toml=TEAMS, extra_toml=MENU
    ) as ex:
        ex.start_asterisk()
        yield ex


async def _uniqueid_of(ami: object, caller: str) -> str:
    event = await ami.wait_for(  # type: ignore[attr-defined]
        "Newchannel", where=lambda e: e.get("CallerIDNum") == caller
    )
    return event["Uniqueid"]


async def test_each_menu_key_reaches_its_destination(ivr: Exchange) -> None:
    ivr.start_serve()
    for extension in ("2001", "3001", "3201"):
        ivr.phone(extension, ring_ms=200)
    async with ivr.ami_events() as ami:
        cases = {
            "0611111101": "1",  # a team
            "0611111102": "20",  # information, then 0: the KCC after all
            "0611111103": "31",  # a submenu, then its team
            "0611111104": "98",  # wrong twice: the KCC
            "0611111105": "0",  # 0 always reaches the KCC
            "0611111106": "2",  # information, no 0: a polite goodbye
        }
        results = await asyncio.gather(
            *(
                # Long enough for two wrong keys and the KCC's ringing on a busy machine.
                ivr.call("14070", caller=caller, keys=keys, hold_ms=15000, key_delay_ms=1500)
                for caller, keys in cases.items()
            ),
            ivr.call("14070", caller="0611111107", keys="", hold_ms=14000),  # no key at all
        )
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]

        async def rang(caller: str) -> str:
            dial = await ami.wait_for("DialBegin", where=lambda e: e.get("CallerIDNum") == caller)
            return dial["DestChannel"].split("/")[1].split("-")[0]

        assert await rang("0611111101") == "3001"
        assert await rang("0611111102") == "2001"
        assert await rang("0611111103") == "3201"
        assert await rang("0611111104") == "2001"
        assert await rang("0611111105") == "2001"
        assert await rang("0611111107") == "2001"
        goodbye = await _uniqueid_of(ami, "0611111106")
        assert played(ami, goodbye, "goodbye")
        assert not ami.matching("DialBegin", CallerIDNum="0611111106")
        wrong = await _uniqueid_of(ami, "0611111104")
        assert [e["Key"] for e in played(ami, wrong, "invalid")] == ["8"]
        silent = await _uniqueid_of(ami, "0611111107")
        assert played(ami, silent, "no_choice")
    figures = ivr.http_get("/metrics")
    for line in (
        'bereik_ivr_choices_total{destination="vergunningen",path="1"} 1.0',
        'bereik_ivr_choices_total{destination="submenu",path="3"} 1.0',
        'bereik_ivr_choices_total{destination="parkeren",path="3.1"} 1.0',
        'bereik_ivr_choices_total{destination="info",path="2"} 2.0',
        'bereik_ivr_choices_total{destination="kcc",path="0"} 1.0',
        'bereik_ivr_choices_total{destination="retry",path="invalid"} 1.0',
        'bereik_ivr_choices_total{destination="kcc",path="invalid"} 1.0',
        'bereik_ivr_choices_total{destination="kcc",path="none"} 1.0',
    ):
        assert line in figures, line
    routes = dict(ivr.rows("SELECT caller, route FROM calls"))
    assert routes == {
        "0611111101": "team-7001",
        "0611111102": "kcc",
        "0611111103": "team-7003",
        "0611111104": "kcc",
        "0611111105": "kcc",
        "0611111106": "info",
        "0611111107": "kcc",
    }


async def api_post(ex: Exchange, path: str, body: dict[str, object]) -> dict[str, Any]:
    engine = create_engine(ex.database_url)
    try:
        async with sessions(engine)() as session:
            user = await create_user(session, "olga", "een-lang-wachtwoord", "operator")
            token = await issue_token(session, user)
            await session.commit()
    finally:
        await engine.dispose()
    request = urllib.request.Request(
        ex.url(path),
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
    assert response.status == 201
    return dict(json.loads(response.read()))


def _announcement_id(output: str) -> int:
    # "announcement #3 stored: live now"
    return int(output.split("#", 1)[1].split()[0])


async def test_announcements_play_for_14070_and_for_their_menu_option_expired_ones_do_not(
    ivr: Exchange,
) -> None:
    news = _announcement_id(announce(ivr, "Nieuws van vandaag.", "--kind", "news"))
    outage = _announcement_id(
        announce(
            ivr, "Storing in het betaalsysteem.", "--kind", "outage", "--until", "2099-01-01T00:00"
        )
    )
    # Ended yesterday: kept (the purge removes ended announcements only after
    # `retention.announcement_days`), never played.
    yesterday = (datetime.now(ZoneInfo("Europe/Amsterdam")) - timedelta(days=1)).date()
    expired = _announcement_id(
        announce(
            ivr,
            "Oude storing.",
            "--kind",
            "outage",
            "--from",
            f"{yesterday}T08:00",
            "--until",
            f"{yesterday}T17:00",
        )
    )
    ivr.start_serve()
    # The other way in: the HTTP API of the running server, as an operator with a token.
    made = await api_post(
        ivr,
        "/api/announcements",
        {"text": "Vergunningen tijdelijk per mail.", "kind": "news", "scope": "menu:1"},
    )
    permits = int(made["id"])
    ivr.phone("3001", ring_ms=200)
    ivr.phone("2001", ring_ms=200)
    async with ivr.ami_events() as ami:
        listening, choosing = await asyncio.gather(
            # Hears everything: greeting, outage, news, then the menu; no key: the KCC.
            ivr.call("14070", caller="0622222201", hold_ms=14000, key_delay_ms=100),
            # Presses 1 while the first announcement plays: goes on with key 1.
            ivr.call("14070", caller="0622222202", keys="1", key_delay_ms=1500, hold_ms=6000),
        )
        assert listening.returncode == 0 and choosing.returncode == 0
        first = await _uniqueid_of(ami, "0622222201")
        heard = played(ami, first, "announcement")
        assert [int(e["Id"]) for e in heard] == [outage, news]  # outage before news
        assert all(int(e["Endpos"]) > 8000 for e in heard)  # more than a second of each
        second = await _uniqueid_of(ami, "0622222202")
        assert permits in [int(e["Id"]) for e in played(ami, second, "announcement")]
        dial = await ami.wait_for("DialBegin", where=lambda e: e.get("CallerIDNum") == "0622222202")
        assert dial["DestChannel"].startswith("PJSIP/3001-")
        every = [
            int(e["Id"])
            for e in ami.matching("UserEvent", UserEvent="BereikPlayed")
            if e.get("What") == "announcement"
        ]
        assert expired not in every
        assert permits not in [int(e["Id"]) for e in heard]  # menu:1 only after key 1


async def test_closed_hours_offer_a_callback_request_and_a_repeat_caller_hears_the_promise(
    installation: Installation, tmp_path: Path
) -> None:
    hours = closed_today("studiedag")
    menu = MENU.replace("timeout_seconds = 3", "timeout_seconds = 6")
    with exchange(
        installation,
        tmp_path,
        phones=_phones(),
        teams_toml=TEAMS,
        extra_toml=menu,
        hours_toml=hours,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        ex.phone("2001")
        async with ex.ami_events() as ami:
            # The closed message and the hours take about 8 s; then "press 1" for a
            # callback, and 1 again for its subject: the first team of the menu.
            first = await ex.call(
                "14070", caller="0633333301", keys="11", key_delay_ms=11000, hold_ms=11000
            )
            assert first.returncode == 0, first.stderr
            hoppers = ex.rows("SELECT team_id, caller, reason, status, deadline FROM hoppers")
            assert [(h.team_id, h.caller, h.reason, h.status) for h in hoppers] == [
                ("vergunningen", "0633333301", "after_hours", "open")
            ]
            second = await ex.call("14070", caller="0633333301", hold_ms=16000, key_delay_ms=100)
            assert second.returncode == 0, second.stderr
            calls = [e["Uniqueid"] for e in ami.matching("Newchannel", CallerIDNum="0633333301")]
            assert len(calls) == 2
            assert played(ami, calls[0], "closed") and played(ami, calls[0], "callback_done")
            assert played(ami, calls[1], "repeat")  # "... belt u terug vóór <datum>"
            assert not played(ami, calls[1], "callback_offer")
            assert not ami.matching("DialBegin", CallerIDNum="0633333301")  # nobody rang
        assert len(ex.rows("SELECT id FROM hoppers")) == 1
        assert {r.route for r in ex.rows("SELECT route FROM calls")} == {"closed"}


async def test_a_key_pressed_while_the_closed_message_plays_answers_the_callback_offer(
    installation: Installation, tmp_path: Path
) -> None:
    hours = closed_today("studiedag")
    with exchange(
        installation, tmp_path, phones=_phones(), teams_toml=TEAMS, extra_toml=MENU,
        hours_toml=hours,
    ) as ex:  # fmt: skip
        ex.start_asterisk()
        ex.start_serve()
        async with ex.ami_events() as ami:
            # One key, 5 s in: the closed message or the opening hours are still playing
            # (together about 8 s), even when a busy machine starts them a few seconds late.
            result = await ex.call(
                "14070", caller="0633333302", keys="1", key_delay_ms=5000, hold_ms=20000
            )
            assert result.returncode == 0, result.stderr
            uniqueid = ami.matching("Newchannel", CallerIDNum="0633333302")[0]["Uniqueid"]
            cut = [
                e["What"]
                for e in ami.matching("UserEvent", UserEvent="BereikPlayed")
                if e.get("Uniqueid") == uniqueid and e.get("Key") == "1"
            ]
            assert cut and cut[0] in ("closed", "hours")
            # The key was the answer: the caller was not asked again.
            assert not played(ami, uniqueid, "callback_offer")
            assert played(ami, uniqueid, "callback_subject")
        hoppers = ex.rows("SELECT team_id, caller, reason FROM hoppers")
        assert [(h.team_id, h.caller, h.reason) for h in hoppers] == [
            ("kcc", "0633333302", "after_hours")
        ]


async def test_an_operator_records_an_announcement_by_phone_and_the_next_caller_hears_it(
    installation: Installation, tmp_path: Path
) -> None:
    phones = [*_phones(), Phone("4001", free_port(), "Operator Olga")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=MENU) as ex:
        ex.start_asterisk()
        ex.start_serve()
        ex.phone("2001")
        async with ex.ami_events() as ami:
            # PIN, wait for the beep, speak 7 s, # ends; keep (1), outage (1), 8 hours.
            result = await ex.call(
                "*77",
                from_phone="4001",
                keys="804613#,,,,,~#11,8#",
                key_delay_ms=1500,
                hold_ms=7000,
                timeout_s=90,
            )
            assert result.returncode == 0, result.stderr
            live = await ami.wait_for("UserEvent", UserEvent="BereikOperator", Step="live")
            recorded = ami.matching("UserEvent", UserEvent="BereikOperator", Step="recorded")
            assert int(recorded[-1]["Samples"]) > 8000 * 4  # seconds of speech, not silence
            rows = ex.rows(
                "SELECT id, kind, scope, source, author, valid_until, audio FROM announcements"
            )
            assert len(rows) == 1 and rows[0].id == int(live["Id"])
            row = rows[0]
            assert (row.kind, row.scope, row.source, row.author) == (
                "outage",
                "all",
                "phone",
                "telefoon 4001",
            )
            until = datetime.fromisoformat(str(row.valid_until)).replace(tzinfo=ZoneInfo("UTC"))
            hours_left = (until - datetime.now(ZoneInfo("UTC"))).total_seconds() / 3600
            assert 7.5 < hours_left <= 8
            await ex.call("14070", caller="0644444401", hold_ms=11000, key_delay_ms=100)
            caller = await _uniqueid_of(ami, "0644444401")
            heard = played(ami, caller, "announcement")
            assert [int(e["Id"]) for e in heard] == [row.id]
            assert int(heard[0]["Endpos"]) > 8000
