"""Opening hours of the exchange: when 14070 and the team numbers are answered.

Built from ``config.Hours`` plus ``Exchange.timezone``. Every question is answered in the
exchange's local time (Europe/Amsterdam), whatever timezone the caller's datetime is in,
so the clocks turning in March and October never move an opening time.

Which days are closed
---------------------
A date is a *working day* when all of these hold:

* its weekday has opening hours configured (``mon`` .. ``sun``; by default Monday to
  Friday 08:30-17:00, Saturday and Sunday closed);
* it is not a Dutch public holiday, unless that holiday's name is in
  ``hours.holidays_open``;
* it is not closed for the whole day by a ``ClosedPeriod`` (one without start/end, or
  one whose start/end cover all of that day's opening hours).

Public holidays are those of ``holidays.country_holidays("NL", language="en_US")``, the
"public" category. What that package returns depends on its version; holidays 0.109
(installed when this was written) gives, for 2026:

    New Year's Day (1 Jan), Good Friday (3 Apr), Easter Sunday, Easter Monday (6 Apr),
    King's Day (27 Apr), Ascension Day (14 May), Pentecost, Pentecost Monday (25 May),
    Christmas Day (25 Dec), Second Day of Christmas (26 Dec)

and for 2027 the same names (King's Day Tuesday 27 April 2027, Good Friday 26 March).
King's Day moves to 26 April when 27 April is a Sunday (2025). Liberation Day (5 May)
is a public holiday in the package only every fifth year (2025, 2030, ...); in the other
years it sits in the package's "optional" category and is *not* closed by default. Older
versions of the package did not list Good Friday at all; do not rely on either, check
with ``OpeningHours.holiday_names(d)``.

Changing the defaults
---------------------
* To stay **open** on a holiday, put its name in ``hours.holidays_open``, e.g.
  ``holidays_open = ["Good Friday"]``. This applies every year.
* To **close** one extra day (Liberation Day in 2026, the day after Ascension Day, a
  training afternoon), add a ``[[hours.closed]]`` entry. Without ``start``/``end`` the
  whole day is closed; with them only those hours of that date are.
* To close an extra *named* holiday **every year** (Liberation Day, or Good Friday with a
  package version that lacks it), pass its name in ``extra_holidays`` to
  ``OpeningHours``, or set the module-level default ``EXTRA_HOLIDAYS`` once at start-up.
  Names are looked up in both the "public" and the "optional" category of the package,
  so ``extra_holidays=("Liberation Day",)`` closes 5 May in every year. A name in
  ``extra_holidays`` wins over the same name in ``holidays_open``. (The config schema has
  no field for this yet; ``hours.holidays_closed`` would be its natural place.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from dialplan.config import WEEKDAYS, Hours

# Extra holiday names (package names, en_US) that close the exchange every year.
# Set once at start-up, before building OpeningHours; an explicit argument overrides it.
EXTRA_HOLIDAYS: tuple[str, ...] = ()

# How far next_opening / next_working_day look before giving up: long enough for any
# summer closure, short enough that a config with every weekday empty fails fast.
SEARCH_DAYS = 3660

_END_OF_DAY = time.max

_DAY_NAMES = {
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}

Span = tuple[time, time]


def _parse_span(value: str) -> Span | None:
    if not value:
        return None
    start, end = value.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def _subtract(spans: list[Span], cut: Span) -> list[Span]:
    """The parts of ``spans`` outside ``cut``."""
    left: list[Span] = []
    for start, end in spans:
        if cut[1] <= start or cut[0] >= end:
            left.append((start, end))
            continue
        if start < cut[0]:
            left.append((start, cut[0]))
        if cut[1] < end:
            left.append((cut[1], end))
    return left


_BY_CONFIG: dict[int, tuple[Hours, str, OpeningHours]] = {}


def cached_opening_hours(hours: Hours, timezone: str) -> OpeningHours:
    """One OpeningHours per configured [hours], kept: for handlers that run on every call.

    Building one creates the holiday tables, and its first question of a year computes that
    year's holidays: about a millisecond of CPU that a call should not pay each time.
    Keyed by identity, since the config is loaded once per process and never changed.
    """
    found = _BY_CONFIG.get(id(hours))
    if found is None or found[0] is not hours or found[1] != timezone:
        if len(_BY_CONFIG) >= 16:
            _BY_CONFIG.clear()  # only tests make many configs; a process has one or two
        found = (hours, timezone, OpeningHours(hours, timezone))
        _BY_CONFIG[id(hours)] = found
    return found[2]


class OpeningHours:
    """The exchange's opening hours in its local timezone.

    Pure and cheap to query: the configuration is parsed once, holiday tables are
    computed per year on first use and kept.
    """

    def __init__(
        self,
        hours: Hours,
        timezone: str = "Europe/Amsterdam",
        *,
        extra_holidays: Iterable[str] | None = None,
    ) -> None:
        self.hours = hours
        self.tz = ZoneInfo(timezone)
        self._weekly: tuple[Span | None, ...] = tuple(
            _parse_span(getattr(hours, day)) for day in WEEKDAYS
        )
        self._open_holidays = frozenset(hours.holidays_open)
        if extra_holidays is None:
            extra_holidays = (*EXTRA_HOLIDAYS, *hours.holidays_closed)
        self._extra = frozenset(extra_holidays)
        self._whole_day: dict[date, str] = {}
        self._partial: dict[date, list[tuple[Span, str]]] = {}
        for index, period in enumerate(hours.closed):
            if period.start is None and period.end is None:
                self._whole_day.setdefault(period.date, period.reason)
                continue
            # A missing start or end means "from the start" / "to the end" of the day.
            cut = (period.start or time.min, period.end or _END_OF_DAY)
            if cut[0] >= cut[1]:
                # The schema does not check this; failing at start-up beats a closure
                # that silently never happens.
                raise ValueError(f"hours.closed[{index}]: end must be after start")
            self._partial.setdefault(period.date, []).append((cut, period.reason))
        self._public = holidays.country_holidays("NL", language="en_US")
        self._optional = holidays.country_holidays(
            "NL", language="en_US", categories=(holidays.OPTIONAL,)
        )
        # Spans per date are asked for again and again by the callback clock.
        self._spans = lru_cache(maxsize=4096)(self._compute_spans)
        # Asked on every call (is the exchange open?): the holidays package's look-up for a
        # date is dearer than the rest of the answer, and a date's holiday never changes.
        self._holiday = lru_cache(maxsize=4096)(self._closing_holiday)

    # -- days ---------------------------------------------------------------------------

    def holiday_names(self, d: date) -> list[str]:
        """The package's names for ``d`` (public and optional), whether or not they close."""
        return self._public.get_list(d) + self._optional.get_list(d)

    def closing_holiday(self, d: date) -> str | None:
        """The name of the holiday that closes ``d``, or None (kept per date, see __init__)."""
        return self._holiday(d)

    def _closing_holiday(self, d: date) -> str | None:
        for name in self._public.get_list(d):
            if name in self._extra or name not in self._open_holidays:
                return name
        for name in self._optional.get_list(d):
            if name in self._extra:
                return name
        return None

    def _compute_spans(self, d: date) -> tuple[Span, ...]:
        weekly = self._weekly[d.weekday()]
        if weekly is None or d in self._whole_day or self.closing_holiday(d) is not None:
            return ()
        spans = [weekly]
        for cut, _reason in self._partial.get(d, ()):
            spans = _subtract(spans, cut)
        return tuple(spans)

    def open_spans(self, d: date) -> Sequence[Span]:
        """The local (open, close) intervals of ``d``, in order; empty when closed all day."""
        return self._spans(d)

    def is_working_day(self, d: date) -> bool:
        return bool(self._spans(d))

    def opening_span(self, d: date) -> Span | None:
        """First opening and last closing time of ``d``, or None when closed all day.

        A closed hour in the middle of the day (a meeting) is not visible here; a closed
        afternoon is: it moves the closing time forward.
        """
        spans = self._spans(d)
        if not spans:
            return None
        return spans[0][0], spans[-1][1]

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d``."""
        for offset in range(1, SEARCH_DAYS + 1):
            candidate = d + timedelta(days=offset)
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within {SEARCH_DAYS} days after {d}")

    def local(self, d: date, t: time) -> datetime:
        """``d`` at local wall time ``t`` as an aware datetime in the exchange's timezone."""
        # The round trip through UTC normalises a wall time that does not exist on the
        # spring DST day (02:30) instead of keeping an impossible local time.
        return datetime.combine(d, t, tzinfo=self.tz).astimezone(UTC).astimezone(self.tz)

    # -- moments ------------------------------------------------------------------------

    def _localise(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime given to OpeningHours; use an aware one")
        return at.astimezone(self.tz)

    def is_open(self, at: datetime) -> bool:
        return self.closure_reason(at) is None

    def closure_reason(self, at: datetime) -> str | None:
        """Why the exchange is closed at ``at``, or None when it is open.

        One of ``"closed_period:<reason>"``, ``"holiday:<name>"``, ``"weekday"`` (no hours
        on that weekday) or ``"after_hours"``. A configured closure is named before a
        holiday because the operator wrote it for that very date.
        """
        local = self._localise(at)
        d, t = local.date(), local.time()
        if d in self._whole_day:
            return f"closed_period:{self._whole_day[d]}"
        holiday = self.closing_holiday(d)
        if holiday is not None:
            return f"holiday:{holiday}"
        weekly = self._weekly[d.weekday()]
        if weekly is None:
            return "weekday"
        if not weekly[0] <= t < weekly[1]:
            return "after_hours"
        for (start, end), reason in self._partial.get(d, ()):
            if start <= t < end:
                return f"closed_period:{reason}"
        return None

    def next_opening(self, at: datetime) -> datetime | None:
        """The first moment at or after ``at`` when the exchange is open, local time.

        Returns ``at`` itself (in local time) when already open, None when no opening
        exists within ``SEARCH_DAYS`` (every weekday configured closed).
        """
        local = self._localise(at)
        d = local.date()
        for offset in range(SEARCH_DAYS + 1):
            day = d + timedelta(days=offset)
            for start, end in self._spans(day):
                opens, closes = self.local(day, start), self.local(day, end)
                if local < closes:
                    return max(local, opens)
        return None

    # -- what the caller hears ----------------------------------------------------------

    def describe(self, language: str = "nl") -> str:
        """The weekly hours as one sentence for an announcement, in Dutch or English.

        Consecutive weekdays with the same hours are grouped ("maandag tot en met
        vrijdag"). Holidays and closures are not mentioned: they get their own message.
        """
        lang = "en" if language.lower().startswith("en") else "nl"
        names = _DAY_NAMES[lang]
        groups: list[tuple[int, int, Span]] = []
        for index, span in enumerate(self._weekly):
            if span is None:
                continue
            if groups and groups[-1][1] == index - 1 and groups[-1][2] == span:
                groups[-1] = (groups[-1][0], index, span)
            else:
                groups.append((index, index, span))
        if not groups:
            if lang == "en":
                return "We cannot be reached by phone."
            return "Wij zijn telefonisch niet bereikbaar."
        parts = [
            self._describe_group(names[a], names[b], b - a, span, lang) for a, b, span in groups
        ]
        if lang == "en":
            return f"We are available {_join(parts, 'and')}."
        return f"Wij zijn bereikbaar op {_join(parts, 'en')}."

    @staticmethod
    def _describe_group(first: str, last: str, extra_days: int, span: Span, lang: str) -> str:
        words = {"en": ("and", "to"), "nl": ("en", "tot en met")}[lang]
        days = first
        if extra_days:
            days = f"{first} {words[0] if extra_days == 1 else words[1]} {last}"
        if lang == "en":
            return f"{days} from {_clock(span[0], ':')} to {_clock(span[1], ':')}"
        return f"{days} van {_clock(span[0], '.')} tot {_clock(span[1], '.')} uur"


def _clock(t: time, sep: str) -> str:
    # Dutch writes "8.30 uur", not "08:30"; a TTS voice reads the former naturally.
    return f"{t.hour}{sep}{t.minute:02d}"


def _join(parts: list[str], conjunction: str) -> str:
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {conjunction} {parts[-1]}"
