from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.callback_clock import (
    deadline,
    is_overdue,
    reminder_time,
    start_day,
    working_days_between,
)
from dialplan.config import ClosedPeriod, Hours
from dialplan.hours import OpeningHours

AMS = ZoneInfo("Europe/Amsterdam")
HOURS = OpeningHours(Hours(), "Europe/Amsterdam")
# A richer calendar for the properties: a short Friday, a whole-day closure, a closed
# afternoon and a closure in the middle of the day.
VARIED = OpeningHours(
    Hours(
        fri="08:30-12:00",
        closed=[
            ClosedPeriod(date=date(2026, 5, 15), reason="brugdag"),
            ClosedPeriod(date=date(2026, 6, 11), start=time(13), end=time(17), reason="training"),
            ClosedPeriod(date=date(2026, 6, 16), start=time(12), end=time(13)),
        ],
    )
)


def ams(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=AMS)


def closing(y: int, m: int, d: int, hh: int = 17, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=AMS).astimezone(UTC)


# -- named examples -------------------------------------------------------------------


def test_monday_morning() -> None:
    assert deadline(ams(2026, 3, 9, 10), 2, HOURS) == closing(2026, 3, 11)


def test_before_opening_counts_that_day() -> None:
    assert deadline(ams(2026, 3, 9, 7), 2, HOURS) == closing(2026, 3, 11)


def test_just_before_and_at_closing() -> None:
    assert deadline(ams(2026, 3, 9, 16, 59), 2, HOURS) == closing(2026, 3, 11)
    # At closing time the day is over: Tuesday is day 0.
    assert deadline(ams(2026, 3, 9, 17, 0), 2, HOURS) == closing(2026, 3, 12)
    assert deadline(ams(2026, 3, 9, 20, 0), 2, HOURS) == closing(2026, 3, 12)


def test_friday_afternoon_and_evening() -> None:
    # Friday 13 March 2026, 15:00: Friday is day 0 -> Tuesday.
    assert deadline(ams(2026, 3, 13, 15), 2, HOURS) == closing(2026, 3, 17)
    # Friday 18:00, after closing: Monday is day 0 -> Wednesday.
    assert deadline(ams(2026, 3, 13, 18), 2, HOURS) == closing(2026, 3, 18)
    assert start_day(ams(2026, 3, 13, 18), HOURS) == date(2026, 3, 16)


def test_weekend_counts_from_monday() -> None:
    assert deadline(ams(2026, 3, 14, 11), 2, HOURS) == closing(2026, 3, 18)
    assert deadline(ams(2026, 3, 15, 23, 59), 1, HOURS) == closing(2026, 3, 17)


def test_days_before_kings_day_2027() -> None:
    # King's Day is Tuesday 27 April 2027.
    assert deadline(ams(2027, 4, 23, 10), 2, HOURS) == closing(2027, 4, 28)  # Fri -> Wed
    assert deadline(ams(2027, 4, 26, 10), 2, HOURS) == closing(2027, 4, 29)  # Mon -> Thu
    assert deadline(ams(2027, 4, 26, 10), 1, HOURS) == closing(2027, 4, 28)
    # Made on King's Day itself: Wednesday is day 0.
    assert deadline(ams(2027, 4, 27, 10), 2, HOURS) == closing(2027, 4, 30)


def test_over_christmas_2026() -> None:
    # 25 (Fri) and 26 (Sat) December 2026 are holidays.
    assert deadline(ams(2026, 12, 23, 10), 2, HOURS) == closing(2026, 12, 28)  # Wed -> Mon
    assert deadline(ams(2026, 12, 24, 10), 2, HOURS) == closing(2026, 12, 29)  # Thu -> Tue
    assert deadline(ams(2026, 12, 24, 18), 2, HOURS) == closing(2026, 12, 30)
    assert deadline(ams(2026, 12, 25, 10), 2, HOURS) == closing(2026, 12, 30)
    # Around New Year: 1 January 2027 is a Friday.
    assert deadline(ams(2026, 12, 30, 10), 2, HOURS) == closing(2027, 1, 4)


def test_across_dst_spring_2026() -> None:
    # Clocks go forward on Sunday 29 March 2026: Friday 17:00 is 16:00 UTC,
    # Tuesday 17:00 is 15:00 UTC.
    result = deadline(ams(2026, 3, 27, 10), 2, HOURS)
    assert result == closing(2026, 3, 31)
    assert result == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_across_dst_autumn_2026() -> None:
    # Clocks go back on Sunday 25 October 2026: Tuesday 17:00 is 16:00 UTC.
    result = deadline(ams(2026, 10, 23, 10), 2, HOURS)
    assert result == datetime(2026, 10, 27, 16, 0, tzinfo=UTC)
    # Made during the repeated hour on the Sunday itself.
    both = [datetime(2026, 10, 25, 2, 30, fold=f, tzinfo=AMS) for f in (0, 1)]
    assert {deadline(t, 2, HOURS) for t in both} == {datetime(2026, 10, 28, 16, tzinfo=UTC)}


def test_created_in_other_timezone() -> None:
    # 16:30 UTC on a winter Monday is 17:30 in Amsterdam: after closing.
    assert deadline(datetime(2026, 3, 9, 16, 30, tzinfo=UTC), 2, HOURS) == closing(2026, 3, 12)


def test_closed_afternoon_moves_closing_time() -> None:
    # The training afternoon (Thursday 11 June 2026) closes at 13:00.
    assert deadline(ams(2026, 6, 9, 10), 2, VARIED) == closing(2026, 6, 11, 13)
    assert deadline(ams(2026, 6, 11, 14), 0, VARIED) == closing(2026, 6, 12, 12)
    # Short Friday: a Friday 13:00 hopper counts from Monday.
    assert start_day(ams(2026, 6, 12, 13), VARIED) == date(2026, 6, 15)


def test_zero_working_days_is_closing_of_the_start_day() -> None:
    assert deadline(ams(2026, 3, 9, 10), 0, HOURS) == closing(2026, 3, 9)
    with pytest.raises(ValueError):
        deadline(ams(2026, 3, 9, 10), -1, HOURS)


def test_naive_refused() -> None:
    with pytest.raises(ValueError):
        deadline(datetime(2026, 3, 9, 10), 2, HOURS)
    with pytest.raises(ValueError):
        is_overdue(datetime(2026, 3, 9, 10), datetime.now(UTC))


def test_is_overdue() -> None:
    d = closing(2026, 3, 11)
    assert not is_overdue(d, d)
    assert not is_overdue(d, d - timedelta(seconds=1))
    assert is_overdue(d, d + timedelta(seconds=1))
    assert is_overdue(d, (d + timedelta(minutes=1)).astimezone(AMS))


def test_reminder_time() -> None:
    d = deadline(ams(2026, 3, 27, 10), 2, HOURS)  # Tuesday 31 March, after the DST change
    assert reminder_time(d, HOURS) == datetime(2026, 3, 31, 6, 0, tzinfo=UTC)
    assert reminder_time(d, HOURS, hour=9) == ams(2026, 3, 31, 9).astimezone(UTC)
    with pytest.raises(ValueError):
        reminder_time(d, HOURS, hour=24)


def test_working_days_between() -> None:
    assert working_days_between(date(2026, 3, 13), date(2026, 3, 18), HOURS) == 3
    assert working_days_between(date(2026, 3, 13), date(2026, 3, 13), HOURS) == 0
    assert working_days_between(date(2026, 3, 13), date(2026, 3, 1), HOURS) == 0
    assert working_days_between(date(2027, 4, 26), date(2027, 4, 29), HOURS) == 2


# -- properties -----------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2028, 12, 20),
    timezones=st.just(UTC),
)
norms = st.integers(min_value=0, max_value=10)
calendars = st.sampled_from([HOURS, VARIED])


@settings(max_examples=300, deadline=None)
@given(created=moments, n=norms, hours=calendars)
def test_deadline_falls_at_closing_of_a_working_day(
    created: datetime, n: int, hours: OpeningHours
) -> None:
    result = deadline(created, n, hours)
    assert result.tzinfo is UTC
    local = result.astimezone(hours.tz)
    assert hours.is_working_day(local.date())
    span = hours.opening_span(local.date())
    assert span is not None and local.time() == span[1]
    assert result > created


@settings(max_examples=300, deadline=None)
@given(created=moments, n=norms, hours=calendars)
def test_deadline_is_exactly_n_working_days_after_start_day(
    created: datetime, n: int, hours: OpeningHours
) -> None:
    day0 = start_day(created, hours)
    assert hours.is_working_day(day0)
    assert day0 >= created.astimezone(hours.tz).date()
    end = deadline(created, n, hours).astimezone(hours.tz).date()
    assert working_days_between(day0, end, hours) == n
    # Brute force, independent of next_working_day: count closed-or-open days one by one.
    days = [day0 + timedelta(days=i) for i in range(1, (end - day0).days + 1)]
    assert sum(hours.is_working_day(d) for d in days) == n


@settings(max_examples=300, deadline=None)
@given(
    first=moments,
    gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    n=norms,
    hours=calendars,
)
def test_deadline_is_monotonic(
    first: datetime, gap: timedelta, n: int, hours: OpeningHours
) -> None:
    assert deadline(first, n, hours) <= deadline(first + gap, n, hours)


@settings(max_examples=200, deadline=None)
@given(created=moments, n=st.integers(min_value=0, max_value=9), hours=calendars)
def test_one_more_day_is_later(created: datetime, n: int, hours: OpeningHours) -> None:
    assert deadline(created, n, hours) < deadline(created, n + 1, hours)
