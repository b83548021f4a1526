"""The recording PIN (*77) by phone: wrong PINs count across calls and lock the extension."""

from __future__ import annotations

from pathlib import Path

from bench.exchange import Phone, exchange, free_port
from dialplan.asterisk import Installation

PIN = "804613"
# Each call's first guess has the PIN's length; the others are short, for any wrong entry
# counts the same (each key takes sipp 1.2 s: five six-digit guesses cost 30 s more).
GUESS = "999999#"
SHORT_GUESS = "9#"
# Guesses with a pause between them while "Die pincode is onjuist" plays; nothing after
# the last, for the exchange hangs up then (sipp takes a BYE during its keys as an error).


def guesses(n: int) -> str:
    return ",,,".join([GUESS] + [SHORT_GUESS] * (n - 1))


async def test_guessing_the_pin_over_two_calls_locks_the_extension(
    installation: Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("4001", free_port(), "Olga")]
    settings = f'[operators]\npin = "{PIN}"\n'
    with exchange(installation, tmp_path, phones=phones, extra_toml=settings) as ex:
        ex.start_asterisk()
        ex.start_serve()
        async with ex.ami_events() as ami:
            # Three guesses in the first call: refused, the call ends, nothing locked yet.
            first = await ex.call(
                "*77",
                from_phone="4001",
                keys=guesses(3),
                key_delay_ms=3000,
                hold_ms=40_000,
                timeout_s=120,
            )
            assert first.returncode == 0, first.stderr
            await ami.wait_for("UserEvent", UserEvent="BereikOperator", Step="pin_refused")
            assert ami.matching("UserEvent", UserEvent="BereikOperator", Step="pin_locked") == []
            # Two more in a second call: the fifth wrong PIN from 4001 locks it.
            second = await ex.call(
                "*77",
                from_phone="4001",
                keys=guesses(2),
                key_delay_ms=3000,
                hold_ms=40_000,
                timeout_s=120,
            )
            assert second.returncode == 0, second.stderr
            await ami.wait_for("UserEvent", UserEvent="BereikOperator", Step="pin_locked")
            # Now the extension is not even asked for the PIN: no key opens recording.
            third = await ex.call("*77", from_phone="4001", keys="", hold_ms=20_000, timeout_s=60)
            assert third.returncode == 0, third.stderr
            locked = ami.matching("UserEvent", UserEvent="BereikOperator", Step="pin_locked")
            assert len(locked) == 2 and {e["Extension"] for e in locked} == {"4001"}
            assert ami.matching("UserEvent", UserEvent="BereikOperator", Step="pin_ok") == []
        rows = ex.rows("SELECT extension, locked_until FROM pin_locks")
        assert [r.extension for r in rows] == ["4001"] and rows[0].locked_until is not None
        audit = {
            r.action: r.n
            for r in ex.rows(
                "SELECT action, count(*) AS n FROM audit_log WHERE object_type = 'announcement' "
                "GROUP BY action"
            )
        }
        assert audit == {"pin_refused": 5, "pin_locked": 1}
        assert "bereik_recording_pin_lockouts_total 1.0" in ex.http_get("/metrics")
        assert ex.rows("SELECT count(*) AS n FROM announcements")[0].n == 0
