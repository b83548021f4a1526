"""4. Database unavailable: calls go on by the fallback, nothing half-written, and it recovers."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from tests.e2e.harness import Exchange
from tests.resilience.figures import Figures


async def test_a_locked_database_sends_calls_to_the_kcc_and_recovers(
    kcc: Exchange, figures: Figures
) -> None:
    kcc.start_serve()
    kcc.phone("2001", ring_ms=100)
    lock = sqlite3.connect(kcc.db_path, timeout=1, isolation_level=None)
    async with kcc.ami_events() as ami:
        lock.execute("BEGIN EXCLUSIVE")  # as a stuck backup or a crashed writer would
        locked_at = time.monotonic()
        try:
            result = await kcc.call("14070", caller="0701111111", hold_ms=15_000,
                                    key_delay_ms=100, timeout_s=90)
        finally:
            lock.execute("ROLLBACK")
            unlocked_after = time.monotonic() - locked_at
        reached = [e for e in ami.matching("DialBegin")
                   if e.get("DestChannel", "").startswith("PJSIP/2001-")]
    figures["seconds locked"] = round(unlocked_after, 1)
    figures["calls placed"] = 1
    figures["calls dropped"] = 0 if result.returncode == 0 else 1
    assert result.returncode == 0, result.stderr
    assert len(reached) == 1, "the caller must reach the KCC while the database is locked"

    log = kcc.serve_log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "unavailable" in log  # one clear line says why the fallback was taken

    again = await kcc.call("14070", caller="0702222222", hold_ms=500, timeout_s=60)
    assert again.returncode == 0, again.stderr
    await asyncio.sleep(0.5)
    callers = [row.caller for row in kcc.rows("SELECT caller FROM calls")]
    assert "0702222222" in callers, "after the lock is gone the normal path records calls again"
    assert kcc.rows("PRAGMA integrity_check")[0][0] == "ok"
    figures["recovered"] = "yes"
