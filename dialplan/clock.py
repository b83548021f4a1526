"""The clock that decides a call's path (open or closed, which holiday) and its deadline.

It is the real time, except under a test clock: `BEREIK_TEST_CLOCK` (an ISO date-time
with its offset, e.g. ``2027-04-27T10:00:00+02:00`` for King's Day) is honoured only
together with `BEREIK_TEST_MODE=1`, so that end-to-end tests can place a real call on a
holiday. The test clock starts at that moment when the process starts and then runs on.
A production process refuses to start with a test clock and no test mode
(`check_clock`), so a stray variable can never move a municipality's opening hours.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

CLOCK_VARIABLE = "BEREIK_TEST_CLOCK"
MODE_VARIABLE = "BEREIK_TEST_MODE"


class ClockError(ValueError):
    """A test clock that may not or cannot be used."""


def _offset() -> timedelta:
    wanted = os.environ.get(CLOCK_VARIABLE, "")
    if not wanted or os.environ.get(MODE_VARIABLE) != "1":
        return timedelta(0)
    try:
        moment = datetime.fromisoformat(wanted)
    except ValueError:
        return timedelta(0)  # check_clock refuses it at start
    if moment.tzinfo is None:
        return timedelta(0)
    return moment - datetime.now(UTC)


_OFFSET = _offset()


def check_clock() -> None:
    """Raise ClockError for a test clock outside test mode, or one that is not a moment."""
    wanted = os.environ.get(CLOCK_VARIABLE, "")
    if not wanted:
        return
    if os.environ.get(MODE_VARIABLE) != "1":
        raise ClockError(
            f"{CLOCK_VARIABLE} is set but {MODE_VARIABLE}=1 is not: a test clock is only "
            "honoured in test mode"
        )
    try:
        moment = datetime.fromisoformat(wanted)
    except ValueError:
        raise ClockError(f"{CLOCK_VARIABLE}={wanted!r} is not an ISO date-time") from None
    if moment.tzinfo is None:
        raise ClockError(f"{CLOCK_VARIABLE}={wanted!r} needs an offset, e.g. +02:00")


def now() -> datetime:
    """The current moment (aware, UTC) on the exchange's clock."""
    return datetime.now(UTC) + _OFFSET
