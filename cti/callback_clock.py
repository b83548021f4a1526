"""The callback clock: by when a hopper must be called back (the service norm).

The rule
--------
A hopper created at time T gets deadline = the closing time of the N-th working day
after the "start day", where the start day is T's local date if T is before that day's
closing time on a working day, otherwise the next working day counts as day 0 (so a
hopper made after closing, or on a weekend/holiday, counts from the next working day,
and that day is not itself one of the N).

Examples (N = 2, Monday to Friday 08:30-17:00):

* created Monday 10:00 -> start day Monday -> deadline Wednesday 17:00;
* created Monday 07:00 (before opening) -> start day Monday -> Wednesday 17:00;
* created Friday 18:00 (after closing) -> start day Monday -> Wednesday 17:00;
* created Saturday -> start day Monday -> Wednesday 17:00.

"Working day" and "closing time" are those of ``dialplan.hours.OpeningHours``: a
holiday or a whole-day closure is skipped; a closed afternoon makes that day's closing
time earlier. Everything is computed in the exchange's local time (Europe/Amsterdam):
the deadline is built from the deadline *date* plus the closing wall time, and only then
converted, so a DST change in between never shifts it by an hour. Deadlines are returned
as aware UTC datetimes, the way the store keeps them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from dialplan.hours import OpeningHours

__all__ = [
    "deadline",
    "is_overdue",
    "reminder_time",
    "start_day",
    "working_days_between",
]


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def _closing(d: date, hours: OpeningHours) -> datetime:
    span = hours.opening_span(d)
    if span is None:
        raise ValueError(f"{d} is not a working day")
    return hours.local(d, span[1])


def start_day(created: datetime, hours: OpeningHours) -> date:
    """Day 0 of the clock for a hopper created at ``created`` (see the module docstring)."""
    _require_aware(created, "created")
    d = created.astimezone(hours.tz).date()
    # Compared as instants, not wall times, so the repeated hour in October cannot make
    # a later hopper start earlier.
    if hours.is_working_day(d) and created < _closing(d, hours):
        return d
    return hours.next_working_day(d)


def deadline(created: datetime, working_days: int, hours: OpeningHours) -> datetime:
    """Closing time of the ``working_days``-th working day after the start day, in UTC."""
    if working_days < 0:
        raise ValueError("working_days must not be negative")
    day = start_day(created, hours)
    for _ in range(working_days):
        day = hours.next_working_day(day)
    return _closing(day, hours).astimezone(UTC)


def working_days_between(start: date, end: date, hours: OpeningHours) -> int:
    """How many working days lie after ``start`` up to and including ``end``.

    The count the clock uses: ``working_days_between(start_day(T), deadline date) == N``.
    Zero when ``end`` is not after ``start``.
    """
    count = 0
    day = start
    while True:
        day = hours.next_working_day(day)
        if day > end:
            return count
        count += 1


def is_overdue(deadline: datetime, now: datetime) -> bool:
    """True once ``now`` is past the deadline; the closing minute itself is still in time."""
    _require_aware(deadline, "deadline")
    _require_aware(now, "now")
    return now > deadline


def reminder_time(deadline: datetime, hours: OpeningHours, hour: int = 8) -> datetime:
    """``hour``:00 local time on the morning of the deadline's (local) day, in UTC.

    When to remind a team that a hopper expires today; ``hour`` is
    ``config.callbacks.reminder_hour``.
    """
    _require_aware(deadline, "deadline")
    if not 0 <= hour <= 23:
        raise ValueError("hour must be 0..23")
    d = deadline.astimezone(hours.tz).date()
    return hours.local(d, time(hour)).astimezone(UTC)
