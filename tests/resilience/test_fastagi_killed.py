"""1. FastAGI killed: `kill -9` of bereik serve during 20 calls drops none of them."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.harness import Exchange
from tests.resilience.figures import Figures


async def test_kill_9_of_bereik_serve_during_twenty_calls_drops_none(
    kcc: Exchange, figures: Figures
) -> None:
    kcc.start_serve()
    kcc.phone("2001", ring_ms=100)
    async with kcc.ami_events() as ami:
        calls = asyncio.create_task(
            kcc.call("14070", calls=20, rate=20, limit=20, hold_ms=25_000, key_delay_ms=100,
                     timeout_s=120)
        )
        await asyncio.sleep(0.6)  # calls are arriving and in the IVR handler
        kcc.stop_serve(kill=True)
        killed_at = time.monotonic()
        result = await calls
        reached_kcc = {
            e["Uniqueid"] for e in ami.matching("DialBegin")
            if e.get("DestChannel", "").startswith("PJSIP/2001-")
        }
    counts = result.counts()
    fallbacks = (kcc.host_instance / "log" / "messages.log").read_text().count(
        "Bereik IVR unavailable"
    )
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    figures["reached the KCC"] = len(reached_kcc)
    figures["carried by the dialplan fallback"] = fallbacks
    figures["seconds after kill until all ended"] = round(time.monotonic() - killed_at, 1)
    assert result.returncode == 0, result.stderr
    assert counts["SuccessfulCall(C)"] == 20 and counts["FailedCall(C)"] == 0
    assert len(reached_kcc) == 20, "every caller must reach a KCC phone"
    assert fallbacks >= 1, "some calls must have taken the fallback while serve was dead"

    kcc.start_serve()
    again = await kcc.call("14070", caller="0700000001", hold_ms=500, timeout_s=60)
    assert again.returncode == 0, again.stderr
    assert kcc.rows("SELECT count(*) AS n FROM calls WHERE caller = '0700000001'")[0].n == 1
