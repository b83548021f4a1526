"""2. Asterisk restarted: the AMI client reconnects within 5 s and the gap is visible."""

from __future__ import annotations

import asyncio
import re
import time

from bench.exchange import Exchange
from tests.resilience.figures import Figures


def ami_state(exchange: Exchange) -> tuple[str, float]:
    _status, health = exchange.health()  # 503 while AMI is down
    gauge = re.search(r"^bereik_ami_connected (\S+)$", exchange.http_get("/metrics"), re.M)
    assert gauge, "bereik_ami_connected missing from /metrics"
    return health["ami"], float(gauge.group(1))


async def wait_for_state(exchange: Exchange, wanted: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ami_state(exchange)[0] == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"AMI not {wanted} within {timeout} s")


async def test_ami_reconnects_within_five_seconds_of_asterisk_restart(
    kcc: Exchange, figures: Figures
) -> None:
    figures.title = "Asterisk restarted"
    kcc.start_serve()
    await wait_for_state(kcc, "connected", 10)
    assert ami_state(kcc) == ("connected", 1.0)

    kcc.stop_asterisk()
    await wait_for_state(kcc, "disconnected", 10)
    assert ami_state(kcc) == ("disconnected", 0.0)
    await asyncio.sleep(6)  # long enough for the backoff to grow

    restarted_at = time.monotonic()
    kcc.start_asterisk()  # returns when Asterisk is fully booted
    booted = time.monotonic() - restarted_at
    reconnect = await wait_for_state(kcc, "connected", 10)
    figures["seconds to Asterisk fully booted"] = round(booted, 2)
    figures["then seconds to AMI reconnected"] = round(reconnect, 2)
    assert reconnect < 5
    assert ami_state(kcc) == ("connected", 1.0)

    kcc.phone("2001")
    result = await kcc.call("14070", caller="0700000002", hold_ms=500)
    assert result.returncode == 0, result.stderr
