"""The journey of a call from real calls: a citizen keys 0 in the menu, waits in the KCC's
line (app_queue), an agent answers and transfers on the KCC screen (Asterisk's
BlindTransfer) to a team whose member does not answer, the citizen leaves a callback
request, and the member calls back (click-to-call) and reaches them. The journey lists each
step in order with its time, for those who may see it, with the number masked as elsewhere."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.api import api
from tests.support.browser import axe, chromium, serious
from tests.support.browser import sign_in as sign_in_browser
from tests.support.users import add_users, api_tokens
from tests.support.waiting_line import PATIENT_SERVER, QUEUE_KCC, agents, queue_toml, sign_in

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7002"
members = []
mailbox = "parkeren@gemeente.example"
"""
CALLBACKS = """
[callbacks]
member_ring_seconds = 10
ring_seconds = 5
check_seconds = 1
"""
CITIZEN = "0612345678"


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 9)
    process.wait()


async def until_answered(ex: Exchange, token: str) -> None:
    for _ in range(200):
        status, body = await api(ex, "GET", "/api/agent/call", token)
        call = body.get("call") if status == 200 else None
        if call and call["state"] == "answered":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent's phone did not answer")


async def test_the_journey_lists_menu_line_agent_transfer_hopper_and_callback_in_order(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [*agents("2001"), Phone("3001", free_port(), "Vergunningen Carla")]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        kcc_agents=["2001"],
        kcc_toml=QUEUE_KCC,
        teams_toml=TEAMS,
        extra_toml=queue_toml() + CALLBACKS,
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        tokens = await api_tokens(
            ex,
            [
                ("anna", "agent", "", "2001"),
                ("carla", "member", "vergunningen", "3001"),
                ("paul", "member", "parkeren", ""),
                ("sofie", "supervisor", "", ""),
            ],
        )
        await add_users(ex, [("lena", "lead", "vergunningen", "")])
        ex.phone("2001", ring_ms=300)
        ex.register("2001")
        await sign_in(ex, "2001")
        carla = ex.phone("3001", mode="noanswer")

        # Menu -> KCC line -> agent -> blind transfer -> team, nobody answers -> hopper.
        call = asyncio.create_task(
            ex.call("14070", caller=CITIZEN, keys="0", key_delay_ms=1000, hold_ms=25_000)
        )
        await until_answered(ex, tokens["anna"])
        status, body = await api(
            ex, "POST", "/api/agent/transfer", tokens["anna"], {"team": "vergunningen"}
        )
        assert status == 200, body
        result = await call
        assert result.returncode == 0, result.stderr[-300:]
        ((hopper_id,),) = await until(lambda: ex.rows("select id from hoppers"), timeout=15)
        ((call_id,),) = await until(
            lambda: ex.rows("select id from calls where outcome != '' and caller = :c", c=CITIZEN)
        )
        stop(carla)

        # The member calls back (click-to-call) and reaches the citizen.
        ex.phone("3001", ring_ms=200)
        ex.citizen("answer", ring_ms=300, hold_ms=1000)
        status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", tokens["carla"])
        assert status == 202, body
        await until(
            lambda: (
                ex.rows("select status from hoppers where id = :i", i=hopper_id) == [("closed",)]
            ),
            timeout=30,
        )

        # The journey, as a supervisor asks for it.
        status, journey = await api(ex, "GET", f"/api/calls/{call_id}/journey", tokens["sofie"])
        assert status == 200, journey
        steps: list[dict[str, Any]] = journey["steps"]
        print("journey:", [(s["at"][11:23], s["kind"]) for s in steps])
        kinds = [s["kind"] for s in steps]
        wanted = [
            "arrived",
            "menu",
            "answered",
            "transfer",
            "hopper_created",
            "ended",
            "callback_attempt",
            "hopper_closed",
        ]
        assert [k for k in kinds if k in wanted] == wanted
        times = [datetime.fromisoformat(s["at"]) for s in steps]
        assert times == sorted(times)
        by_kind = {s["kind"]: s for s in reversed(steps)}  # the first of each kind
        assert by_kind["menu"]["route"] == "kcc"
        # The menu's decision and joining the line are one moment (the arrival is stamped
        # to the hundredth), as are leaving the line and the answer: compared by time.
        menu, joined = (datetime.fromisoformat(by_kind[k]["at"]) for k in ("menu", "line_joined"))
        assert abs((joined - menu).total_seconds()) < 1.0
        # Leaving the line and the answer, told by two events.
        assert by_kind["line_left"]["outcome"] == "answered"
        left, answered = (
            datetime.fromisoformat(by_kind[k]["at"]) for k in ("line_left", "answered")
        )
        assert abs((left - answered).total_seconds()) < 1.0
        assert (by_kind["answered"]["team"], by_kind["answered"]["extension"]) == ("kcc", "2001")
        transfer = by_kind["transfer"]
        assert (transfer["team"], transfer["how"], transfer["result"]) == (
            "vergunningen",
            "blind",
            "no_answer",
        )
        rung = [(s["extension"], s["answered"]) for s in steps if s["kind"] == "rung"]
        assert rung[0] == ("2001", True) and ("3001", False) in rung
        assert by_kind["hopper_created"]["reason"] == "no_answer"
        assert by_kind["callback_attempt"]["outcome"] == "reached"
        # Numbers as elsewhere: masked for a supervisor, in full for the team's member.
        assert journey["caller"] == "06******78"
        status, mine = await api(ex, "GET", f"/api/calls/{call_id}/journey", tokens["carla"])
        assert status == 200 and mine["caller"] == CITIZEN
        # The agent who took it may see it; a member of another team may not (audited).
        status, _ = await api(ex, "GET", f"/api/calls/{call_id}/journey", tokens["anna"])
        assert status == 200
        status, _ = await api(ex, "GET", f"/api/calls/{call_id}/journey", tokens["paul"])
        assert status == 403
        assert ex.rows(
            "select actor, action from audit_log where object_type = 'call' and detail like"
            " 'journey%' order by id"
        ) == [("sofie", "view"), ("carla", "view"), ("anna", "view"), ("paul", "refuse")]

        # The page, reached from the hopper in the team's inbox, in Dutch, passes axe.
        async with chromium() as browser:
            page = await sign_in_browser(browser, ex, "lena")
            await page.goto(ex.url(f"/team/hoppers/{hopper_id}"))
            await page.click("#hopper-journey")
            await page.wait_for_selector("#journey tr[data-kind='transfer']")
            text = await page.text_content("#journey tr[data-kind='transfer']") or ""
            assert "Doorverbonden (direct) naar Vergunningen: niet opgenomen" in text
            assert not serious(await axe(page))
