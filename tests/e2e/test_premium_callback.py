"""A paid (0900) caller asks for a callback: real Asterisk, `bereik serve`, sipp citizens
on the trunk and phones. The exchange never dials the 0900 number and the caller hears why.
In the virtual hold the caller keeps their place in line and is answered by the agent; at a
team's callback offer the KCC takes the call, while a citizen calling the team at the same
time gets their hopper; at the KCC's own offer the caller goes back into its line (or,
when the KCC rings every agent, is rung through once more); after hours the caller keys a
Dutch number and gets the hopper on it."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from agi.handlers.hopper import BACK_IN_LINE, NOT_CALLABLE, RING_AGAIN, TO_KCC
from agi.handlers.ivr import AFTER_HOURS_PROMISE
from agi.handlers.queue import VHOLD_PROMISE
from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.ivr import FAST_SPEECH, closed_today
from tests.support.waiting_line import feature_code, kcc_line, phone_calls, sign_in

pytestmark = pytest.mark.e2e

PREMIUM = "09001234567"
CITIZEN = "0612345678"
TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""

# The KCC's own callback offer (agi.handlers.hopper._ask_number), said before the refusal.
KCC_PROMISE = (
    "Er is op dit moment niemand van het klantcontactcentrum beschikbaar. "
    "het klantcontactcentrum belt u binnen twee werkdagen terug"
)


def prompt_played(ex: Exchange, text: str) -> bool:
    """Whether Asterisk played the prompt of `text` (its cached file's name) in this call."""
    digest = hashlib.sha256(f"nl\0{text}".encode()).hexdigest()[:24]
    full_log = (ex.host_instance / "log" / "full.log").read_text(errors="replace")
    return f"prompts/{digest}" in full_log


def in_line(ex: Exchange) -> bool:
    """Whether Asterisk has a citizen (a trunk channel) waiting in the KCC's line now."""
    return any(
        "PJSIP/trunk" in line and "wait:" in line for line in ex.cli("queue show kcc").splitlines()
    )


async def test_a_0900_caller_who_asks_for_the_virtual_hold_is_never_called_back_and_keeps_the_place(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(installation, tmp_path, ["2001"]) as ex:
        agent_log = ex.agent_phone("2001", ring_ms=500, talk_ms=2000)
        ex.register("2001")
        await sign_in(ex, "2001")
        await feature_code(ex, ex.config.queue.pause_code, "2001")  # nobody free: the line
        async with ex.ami_events() as ami:
            # 0 for the KCC, then 1 in line (well after the entry messages): the virtual hold.
            # Asked for another number after hearing why (about 10 s), the caller keys none:
            # "#" ends each of the two questions early (without it, 10 s of waiting each).
            call = asyncio.create_task(
                ex.call(
                    "14070",
                    caller=PREMIUM,
                    keys="0" + "," * 12 + "1" + "," * 13 + "#" + "," * 8 + "#",
                    key_delay_ms=1000,
                    hold_ms=90_000,
                    timeout_s=120,
                )
            )
            # The caller leaves the line for the virtual hold's questions, keys no number
            # we may call, and is back in the line at the same place.
            await until(lambda: in_line(ex), 30)
            await until(lambda: not in_line(ex), 30)
            await until(lambda: in_line(ex), 60)
            await feature_code(ex, ex.config.queue.ready_code, "2001")
            result = await call
            originates = ami.matching("OriginateResponse")
            dials = [e for e in ami.matching("DialBegin") if PREMIUM in e.get("DestChannel", "")]
        assert result.returncode == 0, result.stderr[-500:]
        # Answered by the agent, as a caller in line is.
        served = [str(c["caller"]) for c in phone_calls(agent_log) if "answered" in c]
        assert served == [PREMIUM]
        # Never dialled: no virtual hold recorded, nothing originated, no dial to 0900.
        assert ex.rows("select count(*) from virtual_holds") == [(0,)]
        assert originates == [] and dials == []
        # The caller heard why (the prompt of the promise with the refusal, by its name).
        assert prompt_played(ex, f"{VHOLD_PROMISE}. {NOT_CALLABLE}")


async def test_a_0900_caller_at_a_teams_offer_who_keys_no_number_reaches_the_kcc(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM) as ex:
        ex.start_asterisk()
        ex.start_serve()
        ex.phone("3001", mode="noanswer")
        ex.phone("2001", ring_ms=300)
        async with ex.ami_events() as ami:
            # Nobody of the team answers (5 s): the offer. The 0900 caller hears why their
            # number is not called back and keys none ("#" ends each question early); a
            # citizen calling the team at the same time confirms their own number.
            premium, citizen = await asyncio.gather(
                ex.call(
                    "7001",
                    caller=PREMIUM,
                    keys="#,,,#,,,#,,,#",
                    key_delay_ms=1000,
                    hold_ms=10_000,
                    timeout_s=60,
                ),
                ex.call("7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=8000),
            )
            kcc = [e for e in ami.matching("DialEnd") if "PJSIP/2001-" in e.get("DestChannel", "")]
            dials = [e for e in ami.matching("DialBegin") if PREMIUM in e.get("DestChannel", "")]
        assert premium.returncode == 0, premium.stderr[-500:]
        assert citizen.returncode == 0, citizen.stderr[-500:]
        # A person took the 0900 caller's question: the KCC's phone answered the call.
        assert [e["DialStatus"] for e in kcc] == ["ANSWER"]
        assert prompt_played(ex, TO_KCC)
        # The citizen's call reached its end: their hopper, on their own number. No hopper
        # and no dial on the 0900 number.
        rows = await until(lambda: ex.rows("SELECT team_id, caller FROM hoppers"))
        assert [tuple(r) for r in rows] == [("vergunningen", CITIZEN)]
        assert dials == []


async def test_a_0900_caller_at_the_kcc_lines_offer_who_keys_no_number_goes_back_in_line(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(
        installation, tmp_path, ["2001"], queue={"max_wait_seconds": 10}, extra_toml=FAST_SPEECH
    ) as ex:
        # The agent talks until the caller's keys are over (a BYE amid them fails sipp).
        agent_log = ex.agent_phone("2001", ring_ms=300, talk_ms=5000)
        ex.register("2001")
        await sign_in(ex, "2001")
        await feature_code(ex, ex.config.queue.pause_code, "2001")  # nobody free: the line
        async with ex.ami_events() as ami:
            # 0 for the KCC; after the longest wait (10 s) the KCC's callback offer. "#"
            # every 2 s ends each of its questions early (no number keyed); elsewhere it
            # does nothing (the line knows only 1).
            call = asyncio.create_task(
                ex.call(
                    "14070",
                    caller=PREMIUM,
                    keys="0" + ",#" * 10,
                    key_delay_ms=1500,
                    hold_ms=60_000,
                    timeout_s=120,
                )
            )
            await until(lambda: in_line(ex), 30)
            await until(lambda: not in_line(ex), 30)  # the offer
            await until(lambda: in_line(ex), 60)  # back at the same place
            await feature_code(ex, ex.config.queue.ready_code, "2001")
            result = await call
            originates = ami.matching("OriginateResponse")
            dials = [e for e in ami.matching("DialBegin") if PREMIUM in e.get("DestChannel", "")]
        assert result.returncode == 0, result.stderr[-500:]
        served = [str(c["caller"]) for c in phone_calls(agent_log) if "answered" in c]
        assert served == [PREMIUM]
        # Told why, then that they keep their place.
        assert prompt_played(ex, f"{KCC_PROMISE}. {NOT_CALLABLE}")
        assert prompt_played(ex, BACK_IN_LINE)
        assert ex.rows("select count(*) from hoppers") == [(0,)]
        assert originates == [] and dials == []


async def test_a_0900_caller_at_the_ringing_kccs_offer_who_keys_no_number_is_rung_through_again(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with exchange(installation, tmp_path, extra_toml=FAST_SPEECH) as ex:
        ex.start_asterisk()
        ex.start_serve()
        busy = ex.phone("2001", mode="busy")  # every agent on a call: the offer at once
        async with ex.ami_events() as ami:
            # "#" every 2 s ends each question of the offer early (no number keyed).
            call = asyncio.create_task(
                ex.call("14070", caller=PREMIUM, keys=",#" * 7, hold_ms=4000, timeout_s=60)
            )
            await ami.wait_for(
                "DialEnd", 30, where=lambda e: e.get("DestChannel", "").startswith("PJSIP/2001-")
            )
            busy.terminate()  # the agent's call ended: the next ring is answered
            busy.wait(10)
            ex.phone("2001", ring_ms=300)
            result = await call
            kcc = [e for e in ami.matching("DialEnd") if "PJSIP/2001-" in e.get("DestChannel", "")]
            dials = [e for e in ami.matching("DialBegin") if PREMIUM in e.get("DestChannel", "")]
        assert result.returncode == 0, result.stderr[-500:]
        # The agent's phone was rung once more, after the caller heard why, and answered.
        assert [e["DialStatus"] for e in kcc] == ["BUSY", "ANSWER"]
        assert prompt_played(ex, f"{KCC_PROMISE}. {NOT_CALLABLE}")
        assert prompt_played(ex, RING_AGAIN)
        assert ex.rows("select count(*) from hoppers") == [(0,)]
        assert dials == []


async def test_a_0900_caller_after_hours_keys_a_dutch_number_and_gets_the_hopper_on_it(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    hours = closed_today("studiedag")
    with exchange(installation, tmp_path, extra_toml=FAST_SPEECH, hours_toml=hours) as ex:
        ex.start_asterisk()
        ex.start_serve()
        async with ex.ami_events() as ami:
            # 1 for a callback request, 5 s in (during the closed message, the hours or the
            # offer). The caller hears why their number is not called back; "#" (during
            # that or the question after it) ends it, then the number with "#".
            result = await ex.call(
                "14070",
                caller=PREMIUM,
                keys=f"1,,,#,,{CITIZEN}#",
                key_delay_ms=5000,
                hold_ms=8000,
                timeout_s=90,
            )
            dials = [e for e in ami.matching("DialBegin") if PREMIUM in e.get("DestChannel", "")]
        assert result.returncode == 0, result.stderr[-500:]
        assert prompt_played(ex, f"{AFTER_HOURS_PROMISE}. {NOT_CALLABLE}")
        rows = await until(lambda: ex.rows("SELECT team_id, caller, reason FROM hoppers"))
        assert [tuple(r) for r in rows] == [("kcc", CITIZEN, "after_hours")]
        assert dials == []
