"""The board speaks a supervisor's language, tried as a supervisor would: one meaning of
"waiting" in the team table and the waiting line's row, and no API paths or command names
on the board and the reports screen. Real Asterisk app_queue, `bereik serve`, sipp."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

import aiohttp

from bench.exchange import Exchange, until
from dialplan import asterisk
from tests.support.screen_text import TECHNICAL
from tests.support.users import api_tokens
from tests.support.waiting_line import feature_code, kcc_line, metric, sign_in


async def board(ex: Exchange, token: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(ex.url("/api/board")) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())


def waiting(figures: dict[str, Any]) -> tuple[int, int]:
    """(the team table's KCC cell, the waiting line's row) of one board answer."""
    return int(figures["waiting"].get("kcc", 0)), int(figures["queue"]["waiting"])


async def screen_text(ex: Exchange, token: str, path: str) -> str:
    """What a person reads on a screen: the page without tags, scripts or attributes."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(ex.url(path)) as response:
            assert response.status == 200, path
            page = await response.text()
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def hang_up_every_caller(ex: Exchange, calls: list[asyncio.Task[Any]]) -> None:
    """The board was read while the callers were on the line; now they are done (through
    Asterisk: a sipp caller cannot be told when to hang up, and a fixed stay would have to
    outlast the reading with a margin)."""
    ex.cli("channel request hangup all")
    await asyncio.gather(*calls)


async def test_waiting_means_the_same_in_the_team_table_and_the_lines_row(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(installation, tmp_path, ["2001"]) as ex:
        tokens = await api_tokens(ex, [("sofie", "supervisor", "", "")])
        token = tokens["sofie"]
        ex.agent_phone("2001", ring_ms=1000, talk_ms=4000)
        ex.register("2001")
        # The situation: four callers sent to the KCC, no agent signed in. Each is
        # turned to the callback offer and is still on the line hearing it.
        callers = [f"06111111{i:02d}" for i in range(1, 5)]
        offer = [
            asyncio.create_task(
                ex.call("14070", caller=number, keys="0", key_delay_ms=1000, hold_ms=60_000)
            )
            for number in callers
        ]
        await until(
            lambda: (
                ex.rows("select count(*) from queue_calls where outcome = 'overflow'") == [(4,)]
            ),
            timeout=30,
        )
        seen = await board(ex, token)
        assert ex.active_channels() >= 4 and not any(task.done() for task in offer)
        assert waiting(seen) == (0, 0), seen["waiting"]
        # The wall screen's series says the same as the board.
        assert (metric(ex, "bereik_calls_waiting", team="kcc") or 0.0) == 0.0
        await hang_up_every_caller(ex, offer)

        # Callers who do wait: the agent is signed in but paused, so two callers stay in
        # the line; both places on the board count both of them.
        await sign_in(ex, "2001")
        await feature_code(ex, ex.config.queue.pause_code + "1", "2001")
        in_line = [
            asyncio.create_task(
                ex.call("14070", caller=number, keys="0", key_delay_ms=1000, hold_ms=60_000)
            )
            for number in callers[:2]
        ]
        await until(lambda: metric(ex, "bereik_queue_callers_waiting", queue="kcc") == 2.0, 20)
        assert waiting(await board(ex, token)) == (2, 2)
        assert metric(ex, "bereik_calls_waiting", team="kcc") == 2.0
        await hang_up_every_caller(ex, in_line)

        # No API path or command on the board or the reports: where to click instead.
        for path in ("/board", "/reports"):
            text = await screen_text(ex, token, path)
            assert not TECHNICAL.search(text), (path, TECHNICAL.search(text))
