"""The IVR on 14070 against real Asterisk and sipp callers pressing RFC 2833 keys.

Every assertion is taken from Asterisk's side: DialBegin (which phone rang), UserEvent
BereikPlayed (sent on the channel right after Asterisk answered the STREAM FILE, with
the number of samples it played), and the rows the call left in the database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bereik.asterisk import Installation
from tests.e2e.harness import REPO, Exchange, Phone, exchange, free_port

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
pin = "4321"

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
    with exchange(installation, tmp_path, phones=_phones(), teams_toml=TEAMS, extra_toml=MENU) as ex:
        ex.start_asterisk()
        yield ex


def played(ami: object, caller_uniqueid: str, what: str) -> list[dict[str, str]]:
    return [
        e
        for e in ami.matching("UserEvent", UserEvent="BereikPlayed")  # type: ignore[attr-defined]
        if e.get("Uniqueid") == caller_uniqueid and e.get("What") == what
    ]


async def _uniqueid_of(ami: object, caller: str) -> str:
    event = await ami.wait_for(  # type: ignore[attr-defined]
        "Newchannel", where=lambda e: e.get("CallerIDNum") == caller
    )
    return event["Uniqueid"]


def announce(ex: Exchange, *args: str) -> str:
    """The operator's CLI, as a separate process, exactly as the README shows it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bereik", "announce", *args, "--config", str(ex.config_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


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
                ivr.call("14070", caller=caller, keys=keys, hold_ms=9000, key_delay_ms=1500)
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
    routes = dict(ivr.rows("SELECT caller, route FROM calls"))
    assert routes == {
        "0611111101": "team-7001",
        "0611111102": "kcc",
        "0611111103": "team-7003",
        "0611111104": "kcc",
        "0611111105": "kcc",
        "0611111106": "hangup",
        "0611111107": "kcc",
    }
