from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from dialplan import hours as hours_module
from dialplan.config import ClosedPeriod, Hours
from dialplan.hours import OpeningHours

AMS = ZoneInfo("Europe/Amsterdam")


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=AMS)


@pytest.fixture
def default() -> OpeningHours:
    return OpeningHours(Hours(), "Europe/Amsterdam")


def test_ordinary_weekday(default: OpeningHours) -> None:
    assert default.is_open(at(2026, 3, 10, 8, 30))
    assert default.is_open(at(2026, 3, 10, 16, 59))
    assert not default.is_open(at(2026, 3, 10, 17, 0))
    assert default.closure_reason(at(2026, 3, 10, 8, 29)) == "after_hours"
    assert default.closure_reason(at(2026, 3, 10, 17, 0)) == "after_hours"
    assert default.opening_span(date(2026, 3, 10)) == (time(8, 30), time(17, 0))


def test_weekend(default: OpeningHours) -> None:
    assert default.closure_reason(at(2026, 3, 14)) == "weekday"
    assert not default.is_working_day(date(2026, 3, 15))
    assert default.opening_span(date(2026, 3, 15)) is None


def test_any_timezone_is_converted(default: OpeningHours) -> None:
    # 07:45 UTC is 08:45 in Amsterdam in winter: open; naive datetimes are refused.
    assert default.is_open(datetime(2026, 3, 10, 7, 45, tzinfo=UTC))
    assert not default.is_open(datetime(2026, 3, 10, 16, 15, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        default.is_open(datetime(2026, 3, 10, 12, 0))


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2025, 4, 26), "King's Day"),  # 27 April 2025 is a Sunday
        (date(2026, 4, 27), "King's Day"),
        (date(2027, 4, 27), "King's Day"),
        (date(2026, 4, 6), "Easter Monday"),
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 26), "Second Day of Christmas"),
        (date(2026, 5, 14), "Ascension Day"),
        (date(2026, 5, 25), "Pentecost Monday"),
        (date(2027, 1, 1), "New Year's Day"),
    ],
)
def test_public_holidays_closed(default: OpeningHours, day: date, name: str) -> None:
    assert not default.is_working_day(day)
    assert default.closure_reason(datetime.combine(day, time(10), AMS)) == f"holiday:{name}"


def test_kings_day_2025_not_on_the_27th(default: OpeningHours) -> None:
    assert default.closure_reason(at(2025, 4, 26, 10)) == "holiday:King's Day"
    assert default.is_working_day(date(2025, 4, 28))


def test_liberation_day_only_in_lustrum_years_by_default(default: OpeningHours) -> None:
    assert not default.is_working_day(date(2025, 5, 5))  # 2025: public in the package
    assert default.is_working_day(date(2026, 5, 5))  # Tuesday, only "optional" in 2026
    assert "Liberation Day" in default.holiday_names(date(2026, 5, 5))


def test_extra_holidays_close_liberation_day_every_year() -> None:
    oh = OpeningHours(Hours(), extra_holidays=["Liberation Day"])
    assert not oh.is_working_day(date(2026, 5, 5))
    assert oh.closure_reason(at(2027, 5, 5, 10)) == "holiday:Liberation Day"


def test_module_level_extra_holidays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hours_module, "EXTRA_HOLIDAYS", ("Liberation Day",))
    assert not OpeningHours(Hours()).is_working_day(date(2026, 5, 5))
    # An explicit argument overrides the module default.
    assert OpeningHours(Hours(), extra_holidays=()).is_working_day(date(2026, 5, 5))


def test_good_friday_follows_the_package_and_can_be_opened() -> None:
    good_friday = date(2026, 4, 3)
    oh = OpeningHours(Hours())
    listed = "Good Friday" in oh.holiday_names(good_friday)
    assert oh.is_working_day(good_friday) is not listed
    opened = OpeningHours(Hours(holidays_open=["Good Friday"]))
    assert opened.is_working_day(good_friday)
    assert opened.is_open(at(2026, 4, 3, 10))
    # ... and closed every year, whatever the package version says.
    closed = OpeningHours(Hours(holidays_open=["Good Friday"]), extra_holidays=["Good Friday"])
    assert not closed.is_working_day(good_friday)


def test_holidays_open_keeps_other_holidays_closed() -> None:
    oh = OpeningHours(Hours(holidays_open=["Easter Monday"]))
    assert oh.is_working_day(date(2026, 4, 6))
    assert not oh.is_working_day(date(2026, 4, 27))


def test_whole_day_closure() -> None:
    oh = OpeningHours(
        Hours(closed=[ClosedPeriod(date=date(2026, 5, 15), reason="brugdag")])  # after Ascension
    )
    assert not oh.is_working_day(date(2026, 5, 15))
    assert oh.closure_reason(at(2026, 5, 15, 10)) == "closed_period:brugdag"
    assert oh.opening_span(date(2026, 5, 15)) is None
    assert oh.next_opening(at(2026, 5, 13, 18)) == at(2026, 5, 18, 8, 30)


def test_closed_afternoon() -> None:
    training = ClosedPeriod(
        date=date(2026, 6, 11), start=time(13, 0), end=time(17, 0), reason="training"
    )
    oh = OpeningHours(Hours(closed=[training]))
    assert oh.is_working_day(date(2026, 6, 11))
    assert oh.is_open(at(2026, 6, 11, 12, 59))
    assert oh.closure_reason(at(2026, 6, 11, 13, 0)) == "closed_period:training"
    assert oh.closure_reason(at(2026, 6, 11, 17, 30)) == "after_hours"
    assert oh.opening_span(date(2026, 6, 11)) == (time(8, 30), time(13, 0))
    assert oh.next_opening(at(2026, 6, 11, 14)) == at(2026, 6, 12, 8, 30)
    # Only that date: the next Thursday is an ordinary day.
    assert oh.is_open(at(2026, 6, 18, 14))


def test_closed_hour_in_the_middle_of_the_day() -> None:
    meeting = ClosedPeriod(date=date(2026, 6, 11), start=time(12, 0), end=time(13, 0))
    oh = OpeningHours(Hours(closed=[meeting]))
    assert oh.open_spans(date(2026, 6, 11)) == ((time(8, 30), time(12)), (time(13), time(17)))
    assert oh.opening_span(date(2026, 6, 11)) == (time(8, 30), time(17, 0))
    assert not oh.is_open(at(2026, 6, 11, 12, 30))
    assert oh.next_opening(at(2026, 6, 11, 12, 30)) == at(2026, 6, 11, 13, 0)


def test_closure_covering_all_hours_closes_the_day() -> None:
    cut = ClosedPeriod(date=date(2026, 6, 11), start=time(7, 0), end=time(18, 0), reason="move")
    oh = OpeningHours(Hours(closed=[cut]))
    assert not oh.is_working_day(date(2026, 6, 11))
    assert oh.closure_reason(at(2026, 6, 11, 10)) == "closed_period:move"


def test_closure_with_only_a_start_runs_to_the_end_of_the_day() -> None:
    cut = ClosedPeriod(date=date(2026, 6, 11), start=time(15, 0))
    oh = OpeningHours(Hours(closed=[cut]))
    assert oh.opening_span(date(2026, 6, 11)) == (time(8, 30), time(15, 0))


def test_reversed_closure_is_refused() -> None:
    cut = ClosedPeriod(date=date(2026, 6, 11), start=time(15, 0), end=time(14, 0))
    with pytest.raises(ValueError, match=r"hours.closed\[0\]"):
        OpeningHours(Hours(closed=[cut]))


@pytest.mark.parametrize("day", [date(2026, 3, 30), date(2026, 10, 26)])
def test_dst_change(default: OpeningHours, day: date) -> None:
    # The Monday after the clocks change: still 08:30-17:00 wall time.
    assert default.is_open(datetime.combine(day, time(8, 30), AMS))
    assert not default.is_open(datetime.combine(day, time(8, 29), AMS))
    utc_open = datetime.combine(day, time(8, 30), AMS).astimezone(UTC)
    expected_utc_hour = 6 if day.month == 3 else 7  # summer time: UTC+2, winter: UTC+1
    assert utc_open.hour == expected_utc_hour
    # From the Sunday of the change itself (closed) to the Monday opening.
    sunday = day - timedelta(days=1)
    assert default.closure_reason(datetime.combine(sunday, time(2, 30), UTC)) == "weekday"
    assert default.next_opening(datetime.combine(sunday, time(12), AMS)) == datetime.combine(
        day, time(8, 30), AMS
    )


def test_next_opening(default: OpeningHours) -> None:
    # Open now: now.
    now = at(2026, 3, 10, 10)
    assert default.next_opening(now) == now
    # Friday evening -> Monday morning; Friday before King's Day 2026 -> Tuesday.
    assert default.next_opening(at(2026, 3, 13, 18)) == at(2026, 3, 16, 8, 30)
    assert default.next_opening(at(2026, 4, 24, 18)) == at(2026, 4, 28, 8, 30)
    # Christmas 2026: Thursday 24th evening -> Monday 28th.
    assert default.next_opening(at(2026, 12, 24, 17)) == at(2026, 12, 28, 8, 30)
    # Early morning on a working day: that morning.
    assert default.next_opening(at(2026, 3, 10, 6)) == at(2026, 3, 10, 8, 30)


def test_next_opening_none_when_never_open() -> None:
    never = OpeningHours(Hours(mon="", tue="", wed="", thu="", fri=""))
    assert never.next_opening(at(2026, 3, 10)) is None
    with pytest.raises(ValueError, match="no working day"):
        never.next_working_day(date(2026, 3, 10))


def test_describe_dutch_and_english() -> None:
    oh = OpeningHours(Hours(thu="08:30-20:00", fri="08:30-12:00"))
    assert oh.describe() == (
        "Wij zijn bereikbaar op maandag tot en met woensdag van 8.30 tot 17.00 uur, "
        "donderdag van 8.30 tot 20.00 uur en vrijdag van 8.30 tot 12.00 uur."
    )
    assert oh.describe("en") == (
        "We are available Monday to Wednesday from 8:30 to 17:00, "
        "Thursday from 8:30 to 20:00 and Friday from 8:30 to 12:00."
    )


def test_describe_default_and_pairs() -> None:
    assert OpeningHours(Hours()).describe() == (
        "Wij zijn bereikbaar op maandag tot en met vrijdag van 8.30 tot 17.00 uur."
    )
    two = OpeningHours(Hours(wed="", thu="", fri="", sat="09:00-12:00"))
    assert two.describe() == (
        "Wij zijn bereikbaar op maandag en dinsdag van 8.30 tot 17.00 uur "
        "en zaterdag van 9.00 tot 12.00 uur."
    )
    closed = OpeningHours(Hours(mon="", tue="", wed="", thu="", fri=""))
    assert "niet bereikbaar" in closed.describe()
    assert "cannot be reached" in closed.describe("en")
