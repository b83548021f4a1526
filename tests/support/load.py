"""The load tests' call: menu key 1 to a team whose members are all absent, so every
call ends in the callback offer and a hopper (with a group mail)."""

from __future__ import annotations

from collections.abc import Awaitable

from bench.exchange import Exchange, SippResult
from tests.resilience.figures import Figures
from tests.support.calibration import Calibrations, Rate

TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001", "3002"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""


MENU = """
[menu]
greeting = "Welkom."
prompt = "Maak een keuze."
timeout_seconds = 5

[[menu.options]]
key = "1"
label = "Vergunningen"
team = "vergunningen"
"""


KEYS = "1,1,1"

MAX_RATE = 20  # the rate: no need to go beyond it on a bigger machine
# 40 calls measure the CPU per call, placed in 10 s at 4/s: well below the capacity the
# measure gives (each load test prints it with its figures), so it is the calls' own cost.
CALIBRATION_CALLS, CALIBRATION_RATE = 40, 4
CALIBRATION_CALLERS = "065509"  # the calibration batch's callers: 065509 and sipp's number


async def load_rate(
    path: str, ex: Exchange, calibrations: Calibrations, figures: Figures, forced: float = 0
) -> Rate:
    """The rate for a load of these calls on `path` (measured on `ex` if it is the path's
    first use in this run)."""

    def batch() -> Awaitable[SippResult]:
        return ex.call(
            "14070",
            caller=f"{CALIBRATION_CALLERS}[call_number]",
            keys=KEYS,
            key_delay_ms=1500,
            hold_ms=30_000,
            calls=CALIBRATION_CALLS,
            rate=CALIBRATION_RATE,
            limit=CALIBRATION_CALLS,
            timeout_s=120,
        )

    return await calibrations.rate(
        path, batch, CALIBRATION_CALLS, figures, max_rate=MAX_RATE, forced=forced
    )
