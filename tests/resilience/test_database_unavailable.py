"""4. Database unavailable: calls go on, nothing is lost, and it recovers.

An exclusive lock (as a stuck backup or a crashed writer would hold) for as long as one
call lasts: the caller reaches the KCC, and the AMI listener keeps that call's events until
the database takes them, so the call still gets its row. The IVR handler only reads (the
calls row is the listener's), and SQLite in WAL mode lets readers past a writer's lock, so
the caller may get the menu as usual; a handler that does fail on the store sends the
call down the dialplan's fallback with one clear log line.
"""

from __future__ import annotations

import sqlite3
import time

from bench.exchange import Exchange, until
from tests.resilience.figures import Figures

LOCKED_CALLER = "0701111111"


async def test_a_locked_database_sends_calls_to_the_kcc_and_keeps_their_rows(
    kcc: Exchange, figures: Figures
) -> None:
    kcc.start_serve()
    kcc.phone("2001", ring_ms=100)
    lock = sqlite3.connect(kcc.db_path, timeout=1, isolation_level=None)
    async with kcc.ami_events() as ami:
        lock.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        try:
            result = await kcc.call(
                "14070", caller=LOCKED_CALLER, hold_ms=15_000, key_delay_ms=100, timeout_s=90
            )
        finally:
            lock.execute("ROLLBACK")
            unlocked_at = time.monotonic()
        reached = [
            e
            for e in ami.matching("DialBegin")
            if e.get("DestChannel", "").startswith("PJSIP/2001-")
        ]
    counts = result.counts()
    assert result.returncode == 0, result.stderr
    assert counts["SuccessfulCall(C)"] == 1 and counts["FailedCall(C)"] == 0
    assert len(reached) == 1, "the caller must reach the KCC while the database is locked"
    fallbacks = kcc.ivr_fallbacks()
    assert fallbacks in ([], [reached[0]["Uniqueid"]])

    def locked_call() -> list[object]:
        return kcc.rows(
            "SELECT outcome, answered_by FROM calls WHERE caller = :c AND outcome != ''",
            c=LOCKED_CALLER,
        )

    # The listener retries with a backoff of at most 10 s: the row comes within that.
    rows = await until(locked_call, timeout=20)
    row_after = time.monotonic() - unlocked_at
    assert [(r.outcome, r.answered_by) for r in rows] == [("answered_kcc", "kcc")]

    log = kcc.serve_log.read_text()
    assert "Traceback" not in log, log[-3000:]
    if fallbacks:
        assert "unavailable" in log  # one clear line says why the fallback was taken

    again = await kcc.call("14070", caller="0702222222", hold_ms=1500, timeout_s=60)
    assert again.returncode == 0, again.stderr
    after = await until(
        lambda: kcc.rows("SELECT route FROM calls WHERE caller = '0702222222' AND outcome != ''")
    )
    assert after[0].route == "kcc", "after the lock the IVR handler serves calls again"

    figures.title = f"database locked {round(unlocked_at - locked_at)} s"
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    figures["reached the KCC by the fallback"] = len(fallbacks)
    figures["seconds from unlock to the locked call's row"] = round(row_after, 1)
    figures["calls with their row"] = kcc.rows(
        "SELECT count(*) AS n FROM calls WHERE outcome != ''"
    )[0].n
