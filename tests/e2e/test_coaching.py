"""Coaching end to end: a supervisor listens in on a KCC agent's call from the board.

Real Asterisk (ChanSpy), `bereik serve`, sipp phones for the agent and the supervisor, a
sipp citizen on the trunk, and Chromium for the board's button.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.exchange import Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.api import api
from tests.support.browser import axe, chromium, screenshot, serious
from tests.support.browser import sign_in as sign_in_browser
from tests.support.ivr import TEAM
from tests.support.users import add_users, api_tokens, token_for

CITIZEN = "0644444451"


async def test_a_supervisor_listens_in_from_the_board_the_agent_hears_the_tone_others_get_403(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone(extension, free_port()) for extension in ("2001", "3001", "2050")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM) as ex:
        ex.start_asterisk()
        ex.start_serve()
        # Sofie supervises the KCC from phone 2050; Carla is a member and Lars the lead of
        # Vergunningen, another team than the KCC agent Anna (2001) is in.
        await add_users(ex, [("sofie", "supervisor", "", "2050")])
        tokens = await api_tokens(
            ex, [("carla", "member", "vergunningen", "3001"), ("lars", "lead", "vergunningen", "")]
        )
        # Anna stays on the call until it is ended below (the test hangs her up).
        ex.agent_phone("2001", ring_ms=300, talk_ms=60_000)
        ex.phone("2050", ring_ms=300)
        async with chromium() as browser, ex.ami_events() as ami:
            board = await sign_in_browser(browser, ex, "sofie", width=1400, height=1000)
            await board.goto(ex.url("/board"))
            await board.wait_for_selector("#coaching-none")
            call = asyncio.create_task(
                ex.call("14070", caller=CITIZEN, hold_ms=60_000, timeout_s=90)
            )
            answered = await ami.wait_for(
                "DialEnd", DialStatus="ANSWER", timeout=20,
                where=lambda e: e.get("DestChannel", "").startswith("PJSIP/2001-"),
            )  # fmt: skip
            agent_channel = answered["DestChannel"]
            ((call_id,),) = await until(
                lambda: ex.rows("SELECT id FROM calls WHERE caller = :c", c=CITIZEN)
            )

            # Nobody else may listen in: a member, and the lead of another team (on record).
            for who in ("carla", "lars"):
                status, body = await api(
                    ex, "POST", f"/api/calls/{call_id}/coach", tokens[who], {"mode": "listen"}
                )
                assert status == 403, (who, body)
            status, _ = await api(
                ex, "POST", "/api/calls/987654/coach", tokens["lars"], {"mode": "listen"}
            )
            assert status == 404

            # The board lists Anna's call; "Meeluisteren" by keyboard rings Sofie's phone.
            listen = "#coaching-calls tr th:has-text('2001') ~ td button[data-mode='listen']"
            await board.wait_for_selector(listen, timeout=15_000)
            await board.focus(listen)
            await board.keyboard.press("Enter")
            await board.wait_for_selector("#coaching-status.ok:has-text('2050')")
            spy = await ami.wait_for(
                "ChanSpyStart", timeout=20,
                where=lambda e: e.get("SpyerChannel", "").startswith("PJSIP/2050-"),
            )  # fmt: skip
            assert spy["SpyeeChannel"] == agent_channel
            assert spy["SpyerExten"] == "listen"
            # [coaching] announce (the default): a second spy whispered the tone to Anna's
            # channel alone (private whisper from the tone's Local channel).
            tone = await ami.wait_for(
                "ChanSpyStart", timeout=10,
                where=lambda e: e.get("SpyerChannel", "").startswith("Local/tone@coaching-tone"),
            )  # fmt: skip
            assert tone["SpyeeChannel"] == agent_channel
            assert not serious(await axe(board))
            await screenshot(board, "board-coaching")

            # Anna puts the phone down: the spy ends with her call.
            await ami.client.action({"Action": "Hangup", "Channel": agent_channel})
            await ami.wait_for(
                "ChanSpyStop", timeout=10,
                where=lambda e: e.get("SpyerChannel", "").startswith("PJSIP/2050-"),
            )  # fmt: skip
            await call
        # With no agent on it any more the call cannot be joined (the board has seen the
        # call end when its row has).
        await until(lambda: ex.rows("SELECT id FROM calls WHERE ended_at IS NOT NULL"))
        status, body = await api(
            ex, "POST", f"/api/calls/{call_id}/coach", await token_for(ex, "sofie"),
            {"mode": "barge"},
        )  # fmt: skip
        assert status == 409, body

        # On record: the request, the spy's start on Anna's channel and its end, by Sofie;
        # the two refusals by Carla and Lars.
        rows = await until(
            lambda: (
                r
                if len(r := ex.rows(
                    "SELECT actor, action, detail FROM audit_log WHERE object_type = 'coaching' "
                    "ORDER BY id"
                )) >= 3
                else None
            )
        )  # fmt: skip
        assert [(r[0], r[1]) for r in rows] == [
            ("sofie", "coach"),
            ("sofie", "coach_start"),
            ("sofie", "coach_end"),
        ]
        assert f"on {agent_channel}" in rows[1][2]
        refused = ex.rows(
            "SELECT actor FROM audit_log WHERE action = 'refuse' AND detail LIKE 'coach:%' "
            "ORDER BY id"
        )
        assert [r[0] for r in refused] == ["carla", "lars"]
