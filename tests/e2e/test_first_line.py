"""First-line resolution and the callers who gave up waiting, from real calls: the KCC as a
waiting line (app_queue) with one agent whose phone answers, the KCC screen's transfer to a
team (Asterisk's BlindTransfer), a team member who answers or does not, a hopper made on
the KCC screen, a repeat caller, and a caller who hangs up in the line while the agent
talks. Then the board, /metrics, the reports screen and `bereik report` say the same."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.browser import axe, chromium, screenshot, serious
from tests.support.browser import sign_in as sign_in_browser
from tests.support.users import add_users, api_tokens, token_for
from tests.support.waiting_line import (
    PATIENT_SERVER,
    QUEUE_KCC,
    agents,
    metric,
    queue_toml,
    sign_in,
)

TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""
A, B, C, D, E = (f"06111100{i:02d}" for i in range(1, 6))


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 9)
    process.wait()


class Api:
    def __init__(self, ex: Exchange, token: str) -> None:
        self.ex, self.headers = ex, {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.get(self.ex.url(path)) as response:
                assert response.status == 200, (path, await response.text())
                return await response.json()

    async def text(self, path: str) -> str:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.get(self.ex.url(path)) as response:
                assert response.status == 200, path
                return await response.text()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.post(self.ex.url(path), json=body) as response:
                assert response.status in (200, 201), (path, await response.text())
                return await response.json()


async def kcc_call(ex: Exchange, caller: str, hold_ms: int) -> asyncio.Task[Any]:
    """A citizen who presses 0 for the KCC and hangs up after `hold_ms`."""
    return asyncio.create_task(
        ex.call("14070", caller=caller, keys="0", key_delay_ms=1000, hold_ms=hold_ms)
    )


async def answered_by_agent(anna: Api) -> None:
    async def answered() -> bool:
        call = (await anna.get("/api/agent/call"))["call"]
        return bool(call) and call["state"] == "answered"

    for _ in range(200):
        if await answered():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent's phone did not answer")


async def available(anna: Api) -> None:
    """The agent is free again (the wrap-up after the last call is over)."""
    for _ in range(150):
        if (await anna.get("/api/agent/state"))["state"] == "available":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent did not become available")


def calls_of(ex: Exchange, caller: str) -> list[Any]:
    return ex.rows("select uniqueid from calls where caller = :c", c=caller)


def ended_calls(ex: Exchange, count: int) -> list[Any] | None:
    rows = ex.rows("select caller, answered_by, outcome, team_id from calls where outcome != ''")
    return rows if len(rows) == count else None


async def done(task: asyncio.Task[Any]) -> None:
    result = await task
    assert result.returncode == 0, result.stderr[-300:]


async def test_first_line_resolution_and_callers_who_gave_up_from_real_calls(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [
        *agents("2001"),
        Phone("3001", free_port(), "Vergunningen Carla"),
        Phone("2050", free_port(), "Supervisor Sofie"),
    ]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        kcc_agents=["2001"],
        kcc_toml=QUEUE_KCC,
        teams_toml=TEAM,
        extra_toml=queue_toml(short_abandon_seconds=3, callback_abandoned="true"),
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        tokens = await api_tokens(ex, [("anna", "agent", "", "2001")])
        # Sofie and Lena sign in on the screens too (add_users: the tests' password).
        await add_users(
            ex, [("sofie", "supervisor", "", "2050"), ("lena", "lead", "vergunningen", "")]
        )
        anna, sofie = Api(ex, tokens["anna"]), Api(ex, await token_for(ex, "sofie"))
        ex.phone("2001", ring_ms=300)  # answers every call, until the other side hangs up
        ex.register("2001")
        await sign_in(ex, "2001")

        # A is answered by the KCC and helped there; meanwhile D waits in the line and
        # hangs up after about 5 s (more than short_abandon_seconds = 3).
        first = await kcc_call(ex, A, hold_ms=12_000)
        await answered_by_agent(anna)
        gave_up = await kcc_call(ex, D, hold_ms=7_000)
        await done(first)
        await done(gave_up)

        # B and C: the agent transfers on the KCC screen; Carla answers B, not C (C then
        # hears the team's callback offer, keys nothing: a hopper for the team).
        for caller, mode in ((B, "answer"), (C, "noanswer")):
            await available(anna)
            carla = ex.phone("3001", mode=mode)
            call = await kcc_call(ex, caller, hold_ms=25_000 if mode == "noanswer" else 9_000)
            await answered_by_agent(anna)
            await anna.post("/api/agent/transfer", {"team": "vergunningen"})
            await done(call)
            stop(carla)

        # E: answered, then the agent makes a hopper for the team on the KCC screen.
        await available(anna)
        await done(await kcc_call(ex, E, hold_ms=5_000))
        ((uniqueid,),) = await until(lambda: calls_of(ex, E))
        await anna.post(
            "/api/hoppers", {"caller": E, "team": "vergunningen", "call_uniqueid": uniqueid}
        )
        # A calls again: a repeat caller.
        await available(anna)
        await done(await kcc_call(ex, A, hold_ms=5_000))

        print("calls:", await until(lambda: ended_calls(ex, 6), timeout=20))

        # The board (supervisor): the KCC answered 5, helped 2 itself, passed 2 on, 2 got a
        # hopper, 1 of its 4 callers called again; the team received 2 transfers.
        def first_line(board: dict[str, Any], team: str) -> dict[str, Any]:
            return dict(board["first_line"]["teams"][team])

        # The board's figures are at most 10 s old (computed once for every open board, as
        # often as the board itself refreshes): the first one made after the sixth call.
        board = await sofie.get("/api/board")
        deadline = time.monotonic() + 25
        while first_line(board, "kcc")["answered"] < 5 and time.monotonic() < deadline:
            await asyncio.sleep(1)
            board = await sofie.get("/api/board")
        kcc = first_line(board, "kcc")
        assert (kcc["answered"], kcc["handled"], kcc["passed_on"], kcc["hoppers"]) == (5, 2, 2, 2)
        assert kcc["share"] == 0.4 and board["first_line"]["target"] == 0.8
        assert (kcc["callers"], kcc["repeat_callers"]) == (4, 1)
        assert first_line(board, "vergunningen")["transfers_in"] == 2

        # The caller who gave up: listed, masked for a supervisor, and with a KCC hopper
        # marked as such (once) that the worker made within seconds.
        hoppers = await until(
            lambda: ex.rows("select id, caller, team_id from hoppers where reason = 'abandoned'"),
            timeout=15,
        )
        assert [(caller, team) for _, caller, team in hoppers] == [(D, "kcc")]
        board = await sofie.get("/api/board")
        (stay,) = board["abandoned"]["callers"]
        assert stay["caller"] == D[:2] + "******" + D[-2:]
        assert stay["hopper"] == hoppers[0][0] and 4.0 <= stay["wait_seconds"] <= 10.0

        # /metrics: the same share, the transfers and the target line.
        await until(lambda: metric(ex, "bereik_first_line_ratio", team="kcc") == 0.4, 15)
        assert metric(ex, "bereik_repeat_callers_ratio", team="kcc") == 0.25
        assert metric(ex, "bereik_first_line_transfers", to_team="vergunningen") == 2.0
        assert "bereik_first_line_target 0.8" in ex.http_get("/metrics")

        # `bereik report` (the Monday mail's figures) for this week.
        week = datetime.now(UTC).strftime("%G-W%V")
        command = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bereik", "report", "--period", week, "--team", "kcc"),
            *("--config", str(ex.config_path)),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(command.communicate(), 60)
        assert command.returncode == 0, err.decode()
        assert f"{week},kcc,(team),first_line_share,0.4000" in out.decode()

        # The reports screen lists the KCC's calls it did not handle itself, each with a link
        # to its journey, numbers masked for a supervisor.
        page = await sofie.text("/reports?team=kcc")
        passed = {c: f"{c[:2]}******{c[-2:]}" for c in (B, C, E)}
        for caller, masked in passed.items():
            ((call_id,),) = ex.rows("select id from calls where caller = :c", c=caller)
            assert f'href="/calls/{call_id}/journey"' in page and masked in page

        # The screens, as a team lead sees them (the board with numbers in full), in Dutch,
        # pass axe's WCAG 2.1 AA rules.
        async with chromium() as browser:
            page = await sign_in_browser(browser, ex, "lena", width=1600, height=1000)
            await page.goto(ex.url("/board"))
            await page.wait_for_selector("#gave-up-list")
            assert (await page.text_content("#gave-up-list td[data-a='caller']")) == D
            assert "40 %" in (await page.text_content("#first-line tr[data-team='kcc']") or "")
            # A calls once more, and is still talking with the agent while the supervisor
            # looks at the board (the call is placed now so it gets through the menu while
            # the lead's screens are checked).
            await available(anna)
            talking = await kcc_call(ex, A, hold_ms=30_000)
            assert not serious(await axe(page))
            await page.goto(ex.url("/reports?team=vergunningen"))
            await page.wait_for_selector("#first-line-days")
            assert not serious(await axe(page))

            # The board as the supervisor sees it during that call, in one screenshot for
            # the docs: first-line resolution, the caller who gave up (masked for her) and
            # the agent's call with the coaching buttons.
            await answered_by_agent(anna)
            board = await sign_in_browser(browser, ex, "sofie", width=1600, height=1000)
            assert board.url.endswith("/board")
            listen = "#coaching-calls tr th:has-text('2001') ~ td button[data-mode='listen']"
            await board.wait_for_selector(listen, timeout=15_000)
            assert (await board.text_content(listen) or "").startswith("Meeluisteren")
            masked = D[:2] + "******" + D[-2:]
            assert await board.text_content("#gave-up-list td[data-a='caller']") == masked
            assert "%" in (await board.text_content("#first-line tr[data-team='kcc']") or "")
            assert not serious(await axe(board))
            await screenshot(board, "board-first-line")
        ex.cli("channel request hangup all")  # the end of A's last call
        await done(talking)
