"""A paid (0900) caller asks for the virtual hold: real Asterisk app_queue, `bereik serve`,
a sipp citizen on the trunk and an agent phone. The exchange never dials the 0900 number,
the caller hears why, keeps their place in line and is answered by the agent."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from agi.handlers.hopper import NOT_CALLABLE
from agi.handlers.queue import VHOLD_PROMISE
from bench.exchange import Exchange, until
from dialplan import asterisk
from tests.support.waiting_line import feature_code, kcc_line, phone_calls, sign_in

pytestmark = pytest.mark.e2e

PREMIUM = "09001234567"


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
        said = f"{VHOLD_PROMISE}. {NOT_CALLABLE}"
        digest = hashlib.sha256(f"nl\0{said}".encode()).hexdigest()[:24]
        full_log = (ex.host_instance / "log" / "full.log").read_text(errors="replace")
        assert f"prompts/{digest}" in full_log
