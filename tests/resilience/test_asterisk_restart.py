"""2. Asterisk restarted: the AMI client reconnects within 5 s and the gap is visible."""

from __future__ import annotations

import asyncio
import re
import time

from bench.exchange import Exchange, until
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


def retries_since(exchange: Exchange, offset: int) -> int:
    """The AMI client's reconnect waits `bereik serve` logged after byte `offset`."""
    with exchange.serve_log.open("rb") as log:
        log.seek(offset)
        return log.read().count(b"AMI reconnecting in")


async def test_ami_reconnects_within_five_seconds_of_asterisk_restart(
    kcc: Exchange, figures: Figures
) -> None:
    figures.title = "Asterisk restarted"
    kcc.start_serve()
    await wait_for_state(kcc, "connected", 10)
    assert ami_state(kcc) == ("connected", 1.0)

    stopped_at = kcc.serve_log.stat().st_size
    kcc.stop_asterisk()
    await wait_for_state(kcc, "disconnected", 10)
    assert ami_state(kcc) == ("disconnected", 0.0)
    # The backoff grown to its longest: the fourth wait after the loss is drawn from the
    # longest delay (0.5, 1, 2, then 4 s: cti/ami/client.py), so a reconnect within 5 s
    # of the restart is not the luck of a short wait.
    await until(lambda: retries_since(kcc, stopped_at) >= 4, timeout=20)

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
