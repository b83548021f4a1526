"""A team that is a waiting line (teams.mode = "queue"), end to end: real Asterisk app_queue,
`bereik serve`, sipp citizens on the trunk calling the team number, member phones that
register with digest auth and sign in with the agent feature codes, a real SMTP server for
the team's group mailbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.backends import on_both_backends
from tests.support.ivr import FAST_SPEECH
from tests.support.mail import Smtp
from tests.support.teams import TEAM_TOML
from tests.support.waiting_line import (
    PATIENT_SERVER,
    WRAPUP_S,
    feature_code,
    members,
    metric,
    phone_calls,
    queue_toml,
    sign_in,
)

TEAM = "vergunningen"
TEAM_NUMBER = "7001"
MAX_WAIT_S = 10
CITIZEN = "0612345678"


def team_line_toml(max_wait_seconds: int) -> str:
    """test_teams.py's team Vergunningen (members 3001 and 3002) as a waiting line."""
    return TEAM_TOML.format(strategy="ringall") + (
        f'mode = "queue"\nmax_wait_seconds = {max_wait_seconds}\n'
    )


@contextlib.contextmanager
def team_line(
    installation: asterisk.Installation,
    tmp_path: Path,
    max_wait_seconds: int = 120,
    extra_toml: str = "",
) -> Iterator[Exchange]:
    """An exchange whose team Vergunningen is a waiting line with members 3001 and 3002
    (phones that register); the KCC is today's ring group. Asterisk and `bereik serve`
    started."""
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        *(Phone(e, free_port(), f"Medewerker {e}", registers=True) for e in ("3001", "3002")),
    ]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        teams_toml=team_line_toml(max_wait_seconds),
        extra_toml=queue_toml() + extra_toml,
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        yield ex


@on_both_backends
async def test_two_callers_wait_in_the_team_line_and_the_free_member_answers_them_in_arrival_order(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with team_line(installation, tmp_path) as ex:
        # 3001 talks until the test ends the call, after the other two were served.
        talking = ex.agent_phone("3001", ring_ms=500, talk_ms=150_000)
        free = ex.agent_phone("3002", ring_ms=1000, talk_ms=3000)
        for extension in ("3001", "3002"):
            ex.register(extension)
            await sign_in(ex, extension, TEAM)
        # 3002 pauses, so the first caller goes to 3001, who then talks on.
        await feature_code(ex, ex.config.queue.pause_code, "3002")
        await until(lambda: members(ex, TEAM) == {"3001": "in line", "3002": "paused"})
        async with ex.ami_events() as ami:
            first = asyncio.create_task(
                ex.call(TEAM_NUMBER, caller="0611111111", hold_ms=150_000, timeout_s=180)
            )
            connected = await ami.wait_for("AgentConnect", timeout=30, Queue=TEAM)
            waiting = []
            for number in ("0622222222", "0633333333"):
                call = ex.call(TEAM_NUMBER, caller=number, hold_ms=60_000, timeout_s=90)
                waiting.append(asyncio.create_task(call))
                await ami.wait_for("QueueCallerJoin", timeout=30, Queue=TEAM, CallerIDNum=number)
            # Both wait in line: the one member talks, the other is paused. Then 3002 is
            # ready and takes them, one after the other, wrap-up in between.
            assert len(ami.matching("AgentConnect", Queue=TEAM)) == 1
            await feature_code(ex, ex.config.queue.ready_code, "3002")
            served = await asyncio.gather(*waiting)
            # Only now does the first call end: 3001 was on it while both were served. (A
            # fixed talk time had to outlast them with a margin; sipp cannot be told when to
            # hang up, so Asterisk hangs up the first caller's channel.)
            ex.cli(f"channel request hangup {connected['Channel']}")
            results = [await first, *served]
        assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-300:] for r in results]

        # The member on a call was never rung again; the free one answered both, in order.
        assert [c["caller"] for c in phone_calls(talking)] == ["0611111111"]
        calls = phone_calls(free)
        assert [c["caller"] for c in calls] == ["0622222222", "0633333333"]
        assert all("answered" in c for c in calls), calls
        assert float(calls[1]["rung"]) >= float(calls[0]["ended"]) + WRAPUP_S - 0.05, calls
        stays = ex.rows(
            "select caller, outcome, agent, wait_seconds from queue_calls where queue = :queue"
            " order by joined_at",
            queue=TEAM,
        )
        print("team line stays (caller, outcome, agent, wait s):", stays)
        assert [row[:3] for row in stays] == [
            ("0611111111", "answered", "3001"),
            ("0622222222", "answered", "3002"),
            ("0633333333", "answered", "3002"),
        ]
        await until(lambda: metric(ex, "bereik_queue_answered_total", queue=TEAM) == 3.0)
        assert metric(ex, "bereik_queue_offered_total", queue=TEAM) == 3.0
        # Answered from the team's line is answered by the team, in the norm and reports.
        outcomes = await until(
            lambda: (
                found
                if len(found := ex.rows("select outcome, team_id from calls")) == 3
                and all(row[0] for row in found)
                else None
            ),
            timeout=20,
        )
        assert outcomes == [("answered_team", TEAM)] * 3


async def test_a_caller_nobody_answers_within_the_teams_max_wait_gets_the_teams_hopper_mailed(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    # The caller sits through the callback offer and its goodbye; spoken fast, for what is
    # checked is the hopper and its mail, not the words.
    with team_line(
        installation, tmp_path, max_wait_seconds=MAX_WAIT_S, extra_toml=FAST_SPEECH
    ) as ex:
        smtp = Smtp(ex.ports.smtp)
        mailbox = smtp.start()
        try:
            ex.phone("3001", "noanswer")
            ex.register("3001")
            await sign_in(ex, "3001", TEAM)
            result = await ex.call(TEAM_NUMBER, caller=CITIZEN, hold_ms=45_000, timeout_s=70)
            assert result.returncode == 0, result.stderr[-300:]
            stays = ex.rows(
                "select caller, outcome, detail, wait_seconds from queue_calls"
                " where queue = :queue",
                queue=TEAM,
            )
            print("team line overflow (caller, outcome, status, wait s):", stays)
            assert [row[:3] for row in stays] == [(CITIZEN, "overflow", "TIMEOUT")]
            # The team's own maximum (not [queue]'s 900 s), in app_queue's whole seconds
            # from joining the line, after the entry's few seconds.
            assert MAX_WAIT_S - 1 <= stays[0][3] <= MAX_WAIT_S + 6, stays
            hoppers = await until(
                lambda: ex.rows("select caller, team_id, reason from hoppers"), timeout=20
            )
            assert hoppers == [(CITIZEN, TEAM, "no_answer")]
            mails = await mailbox.wait(1)
            assert len(mails) == 1
            assert mails[0]["To"] == "vergunningen@gemeente.example"
            assert CITIZEN in mails[0]["Subject"]
            await until(
                lambda: (
                    metric(ex, "bereik_queue_overflow_total", queue=TEAM, reason="max_wait") == 1.0
                )
            )
        finally:
            smtp.stop()
