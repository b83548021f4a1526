"""What the KCC's waiting line promises a caller and a supervisor, proven with real calls in
one exchange (two registered agent phones, sipp citizens on the trunk): the "more than N
callers" message, the expected wait said once enough calls were handled, the average
speed of answer on /metrics against the waits sipp saw, the Erlang C forecast on /metrics
and the board, each agent's pause with its reason and time on the board, and a supervisor
signing an agent out from the board."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from bench.exchange import Exchange, SippResult, until
from cti.queue.erlang import agents_needed
from dialplan import asterisk
from tests.support import sipplog
from tests.support.browser import axe, chromium, serious, until_in_page
from tests.support.browser import sign_in as sign_in_browser
from tests.support.users import add_users
from tests.support.waiting_line import (
    SERVICE_LEVEL_S,
    feature_code,
    kcc_line,
    members,
    metric,
    phone_calls,
    sign_in,
)

POSITION_LIMIT = 3  # queue.position_limit: above this place, "more than 3 callers"
WRAPUP_S = 1
KEY_DELAY_MS = 1000  # the caller presses 0 (the KCC) this long after the answer
FIRST_CALLS = 10  # cti/queue/figures.py MIN_SAMPLES: fewer, and no wait is promised
# The waits on /metrics count from the moment the exchange stamped the caller's arrival,
# after the menu handled key 0; sipp's from the key, so the exchange's are a little shorter
# (the key's way through Asterisk and the menu's AGI answer).
ASA_TOLERANCE_S = 1.0

PLAYING = re.compile(
    r"^\[(?P<at>[^\]]+)\].*<(?P<channel>[^>]+)> Playing '(?P<sound>[^'.]+)(\.\w+)?' "
    r"\(language '\w+_bereik'\)"
)


def sounds_by_channel(ex: Exchange) -> dict[str, list[str]]:
    """Per channel, the sounds of Bereik's own queue voice Asterisk played, in order."""
    played: dict[str, list[str]] = {}
    for line in (ex.host_instance / "log" / "full.log").read_text(errors="replace").splitlines():
        match = PLAYING.search(line)
        if match:
            played.setdefault(match.group("channel"), []).append(match.group("sound"))
    return played


def key_time(result: SippResult) -> float:
    """When the caller pressed 0: the ACK of the answer plus the scenario's pause."""
    log = result.stat_file.with_name(result.stat_file.stem + "-messages.log")
    ack = next(m for m in sipplog.read(log) if m.sent and m.method == "ACK")
    return ack.at + KEY_DELAY_MS / 1000


async def callers(ex: Exchange, numbers: list[str], apart_s: float) -> list[SippResult]:
    """Citizens who call 14070 `apart_s` apart, press 0 and wait until an agent hangs up."""

    async def citizen(index: int, number: str) -> SippResult:
        await asyncio.sleep(index * apart_s)
        return await ex.call(
            "14070",
            caller=number,
            keys="0",
            key_delay_ms=KEY_DELAY_MS,
            hold_ms=90_000,
            timeout_s=120,
        )

    results = await asyncio.gather(*(citizen(i, n) for i, n in enumerate(numbers)))
    assert [r.returncode for r in results] == [0] * len(numbers), [r.stderr[-300:] for r in results]
    return list(results)


async def test_the_lines_promises_with_real_calls(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(
        installation,
        tmp_path,
        ["2001", "2002"],
        # No callback offer before joining: each waiting caller would hear it first
        # (seconds each); the promises proven here do not depend on it.
        queue=dict(wrapup_seconds=WRAPUP_S, position_limit=POSITION_LIMIT, virtual_hold="false"),
    ) as ex:
        logs = {
            p.extension: ex.agent_phone(p.extension, ring_ms=300, talk_ms=1000) for p in ex.phones
        }
        for phone in ex.phones:
            ex.register(phone.extension)
        await asyncio.gather(sign_in(ex, "2001"), sign_in(ex, "2002"))
        # No forecast before any call: nothing to plan on.
        assert metric(ex, "bereik_queue_agents_needed", queue="kcc") is None

        async with ex.ami_events() as ami:
            # Ten callers within 2.5 s for two agents: the line grows past 3.
            first = [f"06100000{i:02d}" for i in range(FIRST_CALLS)]
            results = dict(zip(first, await callers(ex, first, 0.25), strict=True))
            joins = ami.matching("QueueCallerJoin", Queue="kcc")
            # Too few calls handled while they came: no wait was promised to any of them.
            assert not ami.matching("UserEvent", UserEvent="BereikPlayed", What="queue_wait")

            # Above place 3 a caller hears "Er wachten meer dan 3 bellers voor u." instead of
            # the place (app_queue at joining, in Bereik's voice); up to 3 the place itself.
            played = sounds_by_channel(ex)
            more_than = ["queue-quantity1", f"digits/{POSITION_LIMIT}", "queue-quantity2"]
            far = [e for e in joins if int(e["Position"]) > POSITION_LIMIT + 1]
            near = [e for e in joins if 1 < int(e["Position"]) <= POSITION_LIMIT]
            assert far, [e["Position"] for e in joins]
            for join in far:
                assert played.get(join["Channel"], [])[:3] == more_than, (join, played)
            for join in near:
                assert played.get(join["Channel"], [])[:1] in ([], ["queue-thereare"]), join

            # Agent 2002 takes a lunch break on the phone (*33 + the first reason).
            paused_from = time.time()
            await feature_code(ex, ex.config.queue.pause_code + "1", "2002")
            paused_by = time.time()
            await until(lambda: members(ex) == {"2001": "in line", "2002": "paused"})
            await until(
                lambda: (
                    ex.rows("select count(*) from queue_calls where talk_seconds is not null")
                    == [(FIRST_CALLS,)]
                )
            )

            # Two more callers, with ten calls handled and one agent working: whoever finds
            # more callers ahead than agents free hears the expected wait (position ×
            # handling time ÷ agents working, a few seconds here: "about 1 minute").
            second = ["0620000001", "0620000002"]
            results.update(zip(second, await callers(ex, second, 0.5), strict=True))
            waits = ami.matching("UserEvent", UserEvent="BereikPlayed", What="queue_wait")
            assert [(e["CallerIDNum"], e["Id"]) for e in waits] in (
                [(second[0], "1")],
                [(second[1], "1")],
            ), waits
            # Asterisk streamed it to the caller: more than a second of speech.
            assert int(waits[0]["Endpos"]) > 8000, waits

        # Every caller answered; the average speed of answer on /metrics is the waits sipp
        # saw: from the key to the agent's phone answering.
        numbers = [*first, *second]
        answered = {
            str(c["caller"]): float(c["answered"])
            for log in logs.values()
            for c in phone_calls(log)
            if "answered" in c
        }
        assert sorted(answered) == sorted(numbers)
        sipp_waits = [answered[n] - key_time(results[n]) for n in numbers]
        sipp_asa = sum(sipp_waits) / len(sipp_waits)
        await until(lambda: metric(ex, "bereik_queue_answered_total", queue="kcc") == 12.0)

        def asa_of_all_twelve() -> float | None:
            # The gauge is refreshed from the database every 5 s: until it covers all twelve
            # (an older value, over fewer calls, may be there at first).
            ((stored, count),) = ex.rows(
                "select avg(wait_seconds), count(*) from queue_calls "
                "where queue = 'kcc' and outcome = 'answered'"
            )
            asa = metric(ex, "bereik_queue_average_answer_seconds", queue="kcc")
            if count != len(numbers) or asa is None or abs(asa - float(stored)) > 0.01:
                return None
            return asa

        asa = await until(asa_of_all_twelve, timeout=15)
        sipp_waits_s = [round(w, 1) for w in sipp_waits]
        stored_waits = ex.rows(
            "select caller, wait_seconds from queue_calls where outcome = 'answered'"
        )
        print("waits (sipp):", dict(zip(numbers, sipp_waits_s, strict=True)))
        print("waits (exchange):", {c: round(float(w), 1) for c, w in stored_waits})
        print(f"ASA: /metrics {asa:.2f} s, sipp {sipp_asa:.2f} s over {len(numbers)} calls")
        assert abs(asa - sipp_asa) <= ASA_TOLERANCE_S, (asa, sipp_asa)

        # The Erlang C forecast, from this hour's real arrivals and handling time.
        ((arrivals, talk),) = ex.rows(
            "select count(*), avg(talk_seconds) from queue_calls where queue = 'kcc'"
        )
        needed = agents_needed(
            int(arrivals),
            float(talk) + WRAPUP_S,
            ex.config.queue.service_level_target,
            SERVICE_LEVEL_S,
        )
        await until(lambda: metric(ex, "bereik_queue_agents_needed", queue="kcc") == needed)

        await add_users(ex, [("sofie", "supervisor", "", "")])
        async with chromium() as browser:
            page = await sign_in_browser(browser, ex, "sofie")
            await page.goto(ex.url("/board"))
            row = "#queue-agents tr[data-agent='2002']"
            await page.wait_for_selector(row)
            assert await page.text_content("#queue-row td[data-q='needed']") == str(needed)
            assert await page.text_content("#queue-row td[data-q='asa']") == f"{round(asa)} s"
            # Each agent's state, the reason of a pause and how long it has lasted.
            seen_at = time.time()
            assert await page.text_content(f"{row} td[data-a='state']") == "Pauze"
            assert await page.text_content(f"{row} td[data-a='reason']") == "Lunch"
            shown = await page.text_content(f"{row} td[data-a='seconds']")
            match = re.fullmatch(r"(\d+) (s|min)", shown or "")
            assert match, shown
            seconds = int(match.group(1)) * (60 if match.group(2) == "min" else 1)
            low = seen_at - paused_by - 2 - (59 if match.group(2) == "min" else 0)
            assert low <= seconds <= seen_at - paused_from + 1, (shown, seen_at - paused_from)

            # The supervisor signs 2001 out from the board: stored, audited, and Asterisk's
            # line no longer has the agent.
            await page.click("#queue-agents tr[data-agent='2001'] button.agent-sign-out")
            await until(lambda: "2001" not in members(ex))
            await until_in_page(
                page,
                "document.querySelector(\"#queue-agents tr[data-agent='2001'] "
                "td[data-a='state']\").textContent === 'Afgemeld'",
            )
            assert "Agent 2001 is afgemeld." in (
                await page.text_content("#queue-agents-status") or ""
            )
            assert ex.rows("select signed_in from agent_states where extension = '2001'") == [
                (False,)
            ]
            assert ex.rows(
                "select actor from audit_log where action = 'agent_sign_out' and object_id = '2001'"
            ) == [("sofie",)]
            assert not serious(await axe(page))
