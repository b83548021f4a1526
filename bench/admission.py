"""The overload row: calls at twice the sustained maximum, through admission control.

At that rate `bereik serve` cannot give every caller a first prompt within a second, so it
must refuse some calls at once (agi/admission.py) and let the dialplan's fallback take
them. The row shows what both kinds of caller get: the first-prompt p99 of the admitted
calls, and how many seconds the refused ones waited before the fallback took them
(both from Asterisk's own log, so they include everything the caller waited for).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.asterisk_log import ivr_starts, percentile

# What admission control promises an admitted caller (server.first_prompt_seconds).
FIRST_PROMPT_BOUND_S = 1.0


@dataclass
class Overload:
    rate: float = 0.0
    placed: int = 0
    admitted: int = 0
    refused: int = 0
    first_prompt_p99: float | None = None
    fallback_p50: float | None = None
    fallback_max: float | None = None
    note: str = ""

    def verdict(self) -> str:
        if self.first_prompt_p99 is None:
            return f"- overload: not measured ({self.note or 'no admitted call'})"
        met = self.first_prompt_p99 <= FIRST_PROMPT_BOUND_S
        return (
            f"- overload {self.rate:.0f}/s (2 × max): admitted calls' first prompt p99 "
            f"{self.first_prompt_p99:.2f} s ({'met' if met else 'MISSED'}: ≤ "
            f"{FIRST_PROMPT_BOUND_S:.0f} s); refused calls reach the fallback after "
            f"p50 {_s(self.fallback_p50)}, max {_s(self.fallback_max)}"
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


async def overload(
    rate: float,
    seconds: float,
    full_log: Path,
    place: Callable[[float, float], Awaitable[tuple[int, int, int]]],
    refusals: Callable[[], float],
) -> Overload:
    """Place calls at `rate` for `seconds` with `place(rate, seconds)`; read the log after."""
    since = _size(full_log)
    refused_before = refusals()
    _, placed, _ = await place(rate, seconds)
    starts = ivr_starts(full_log, since)
    return Overload(
        rate=rate,
        placed=placed,
        admitted=len(starts.first_prompt),
        refused=int(refusals() - refused_before),
        first_prompt_p99=percentile(starts.first_prompt, 0.99),
        fallback_p50=percentile(starts.fallback, 0.5),
        fallback_max=starts.fallback[-1] if starts.fallback else None,
    )


def table(row: Overload) -> list[str]:
    return [
        "| overload: 2 × the max rate, through admission control | calls/s | placed "
        "| admitted | refused | admitted first prompt p99 s | refused to fallback p50 s "
        "| refused to fallback max s |",
        "|---|---|---|---|---|---|---|---|",
        f"| IVR → team → hopper | {row.rate:.0f} | {row.placed} | {row.admitted} | "
        f"{row.refused} | {_s(row.first_prompt_p99)} | {_s(row.fallback_p50)} | "
        f"{_s(row.fallback_max)} |" + (f"\n\n{row.note}" if row.note else ""),
    ]
