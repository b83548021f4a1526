"""1. FastAGI killed: `kill -9` of bereik serve during 20 calls drops none of them.

The kill lands when Asterisk shows all 20 callers in the IVR's AGI (CoreShowChannels), so
every one of them must leave the dead handler by the dialplan fallback and reach the KCC.
"""

from __future__ import annotations

import asyncio
import time

from bench.exchange import EventRecorder, Exchange, until
from tests.resilience.figures import Figures

CALLS = 20


async def channels_in_agi(ami: EventRecorder) -> int:
    channels = await ami.client.action_list({"Action": "CoreShowChannels"}, timeout=10)
    return sum(1 for c in channels if c.get("Application") == "AGI")


async def wait_until_in_agi(ami: EventRecorder, count: int, timeout: float = 30) -> float:
    started = time.monotonic()
    while (seen := await channels_in_agi(ami)) < count:
        assert time.monotonic() - started < timeout, f"only {seen} of {count} calls in AGI"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_kill_9_of_bereik_serve_during_twenty_calls_drops_none(
    kcc: Exchange, figures: Figures
) -> None:
    figures.title = f"`kill -9` of serve during {CALLS} calls"
    kcc.start_serve()
    # The twenty arrive within a second: not in serve's first second, while it still
    # speaks its prompts (agi/warmup.py) and its admission control may refuse some for the
    # loop's lag (to the same fallback, but then they are not all in the IVR to be killed).
    await until(lambda: "IVR prompts ready" in kcc.serve_log.read_text(), timeout=60)
    kcc.phone("2001", ring_ms=100)
    async with kcc.ami_events() as ami:
        calls = asyncio.create_task(
            kcc.call(
                "14070",
                calls=CALLS,
                rate=CALLS,
                limit=CALLS,
                hold_ms=25_000,
                key_delay_ms=100,
                timeout_s=120,
            )
        )
        await wait_until_in_agi(ami, CALLS)
        in_agi_at_kill = await channels_in_agi(ami)
        kcc.stop_serve(kill=True)
        killed_at = time.monotonic()
        result = await calls
        reached_kcc = {
            e["Uniqueid"]
            for e in ami.matching("DialBegin")
            if e.get("DestChannel", "").startswith("PJSIP/2001-")
        }
    counts = result.counts()
    fallbacks = set(kcc.ivr_fallbacks())
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    figures["in the IVR when killed"] = in_agi_at_kill
    figures["reached the KCC"] = len(reached_kcc)
    figures["reached the KCC by the dialplan fallback"] = len(reached_kcc & fallbacks)
    figures["seconds after kill until all ended"] = round(time.monotonic() - killed_at, 1)
    assert result.returncode == 0, result.stderr
    assert counts["SuccessfulCall(C)"] == CALLS and counts["FailedCall(C)"] == 0
    assert in_agi_at_kill == CALLS
    assert len(reached_kcc) == CALLS, "every caller must reach a KCC phone"
    assert reached_kcc <= fallbacks, "every caller must reach the KCC by the fallback"

    kcc.start_serve()
    again = await kcc.call("14070", caller="0700000001", hold_ms=500, timeout_s=60)
    assert again.returncode == 0, again.stderr
    assert kcc.rows("SELECT count(*) AS n FROM calls WHERE caller = '0700000001'")[0].n == 1
