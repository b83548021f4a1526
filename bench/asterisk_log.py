"""What Asterisk's verbose log (full.log) tells about each call's first seconds in the IVR.

Timestamps are Asterisk's own, so the figures include everything between the AGI start
and the moment a caller hears something: the FastAGI connection, Bereik's handler, its
database look-ups and the first STREAM FILE. Used by the bench (overload row) and by the
sustained-load test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_LINE = re.compile(r"^\[([^\]]+)\] VERBOSE\[\d+\]\[(C-[0-9a-f]+)\]")


@dataclass
class IvrStarts:
    """Seconds from each call's IVR AGI start to its first prompt (admitted calls) or to
    the dialplan's fallback (refused or failed calls), sorted."""

    first_prompt: list[float] = field(default_factory=list)
    fallback: list[float] = field(default_factory=list)


def _at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")


def ivr_starts(full_log: Path, since: int = 0) -> IvrStarts:
    """The calls whose IVR started in `full_log` after byte offset `since`."""
    with full_log.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    started: dict[str, datetime] = {}
    prompt: dict[str, float] = {}
    fallback: dict[str, float] = {}
    for line in text.splitlines():
        found = _LINE.match(line)
        if not found:
            continue
        call = found.group(2)
        if "@bereik-main:" in line and "AGI(" in line and "/ivr" in line:
            started.setdefault(call, _at(found.group(1)))
        elif call not in started or call in prompt or call in fallback:
            continue
        elif "Playing '" in line:
            prompt[call] = (_at(found.group(1)) - started[call]).total_seconds()
        elif "Bereik IVR unavailable" in line:
            fallback[call] = (_at(found.group(1)) - started[call]).total_seconds()
    return IvrStarts(sorted(prompt.values()), sorted(fallback.values()))


def percentile(values: list[float], share: float) -> float | None:
    """The value below which `share` of the sorted `values` lie (nearest rank)."""
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * share))]
