"""First-line resolution (eerstelijnsafhandeling): how many callers the team that answered
helped itself, without passing them on. Per local day and per team, from the ``calls`` and
``hoppers`` tables, so the board, /metrics, the reports screen and the Monday mail say the
same and a restart changes nothing.

Definitions, per team T (the KCC is team "kcc") and local day:

* *answered*: calls of that day that T answered first (``calls.answered_by`` = T). Left
  out: acquisitie (a call categorised ``acquisitie``, or one an acquisitie hopper was made
  of): a sales call is no citizen's question.
* *passed on* (a transfer): an answered call that ended with another team (``team_id``
  neither empty nor T), unless what sent it there was a hopper the agent made by hand
  (reason ``manual``): that is a hopper, not a transfer. Counted per receiving team too.
* *hopper*: an answered call that ended in a hopper or was linked to an open one (outcome
  ``hopper``/``repeat``), or that a hopper names (made from the KCC screen after the call).
* *handled in the first line* = answered and neither passed on nor a hopper; the share is
  handled / answered against ``norms.first_line_target`` (default 0.8).
* *repeat callers*: of the known numbers among the answered calls, those that called again
  (any call, to any number of ours) after the answered call and before the end of the
  ``norms.repeat_days``-th working day after it (default 5): the question was not settled.
  Today's figure grows while the window runs; anonymous numbers are not counted.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVarTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Result, Row, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.services import Services
from cti.store.faults import every
from cti.store.models import Call, Hopper
from dialplan.config import ACQUISITION, Config
from dialplan.hours import cached_opening_hours

log = logging.getLogger("bereik.reports")
_Ts = TypeVarTuple("_Ts")

KCC = "kcc"
INTERVAL_SECONDS = 10.0
# The figures are computed from every call answered today, so their cost grows with the
# day: the worker waits at least this many times as long as a refresh took (at most 1 %
# of the time), and the loops give the event loop its turn every YIELD_EVERY calls, so a
# busy day's refresh never holds up a caller's FastAGI session (admission control refuses
# calls while the loop lags).
COST_FACTOR = 100
MAX_REST_SECONDS = 300.0  # and never staler than five minutes
YIELD_EVERY = 500
HOPPER_OUTCOMES = ("hopper", "repeat")
# A number to recognise a caller by: at least six digits (no "anonymous", no "").
KNOWN_NUMBER = re.compile(r"^\+?\d{6,}$")


@dataclass
class FirstLine:
    answered: int = 0
    handled: int = 0  # neither passed on nor a hopper
    passed_on: int = 0  # transferred to another team
    hoppers: int = 0
    callers: int = 0  # known numbers among the answered calls
    repeat_callers: int = 0
    transfers_in: int = 0  # calls another team answered and passed on to this one
    _numbers: set[str] = field(default_factory=set, repr=False)
    _repeats: set[str] = field(default_factory=set, repr=False)

    @property
    def share(self) -> float | None:
        return self.handled / self.answered if self.answered else None

    @property
    def repeat_share(self) -> float | None:
        return self.repeat_callers / self.callers if self.callers else None

    def add(self, other: FirstLine) -> None:
        self.answered += other.answered
        self.handled += other.handled
        self.passed_on += other.passed_on
        self.hoppers += other.hoppers
        self.transfers_in += other.transfers_in
        self._numbers |= other._numbers
        self._repeats |= other._repeats
        self.callers, self.repeat_callers = len(self._numbers), len(self._repeats)

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "answered": self.answered,
            "handled": self.handled,
            "passed_on": self.passed_on,
            "hoppers": self.hoppers,
            "share": self.share,
            "callers": self.callers,
            "repeat_callers": self.repeat_callers,
            "repeat_share": self.repeat_share,
            "transfers_in": self.transfers_in,
        }


def _repeat_end(started: datetime, days: int, config: Config) -> datetime:
    """The end of the `days`-th working day after the day of `started` (local midnight)."""
    hours = cached_opening_hours(config.hours, config.exchange.timezone)
    zone = ZoneInfo(config.exchange.timezone)
    day = started.astimezone(zone).date()
    for _ in range(days):
        day = hours.next_working_day(day)
    return datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(UTC)


@dataclass(frozen=True)
class Answered:
    """One answered call as first-line resolution sees it."""

    id: int
    caller: str
    started_at: datetime
    team: str  # who answered first
    final_team: str  # where it ended
    hopper: bool
    passed_on: bool

    @property
    def handled(self) -> bool:
        return not self.hopper and not self.passed_on


async def answered_calls(
    session: AsyncSession, start: datetime, end: datetime, team: str | None = None
) -> list[Answered]:
    """The answered calls started in [start, end) (of one answering team, if given), each
    classified by the definitions above; acquisitie left out."""
    made_of = or_(Hopper.call_uniqueid == Call.uniqueid, Hopper.call_uniqueid == Call.linkedid)
    acquisitie = or_(
        Call.category == ACQUISITION,
        exists().where(and_(made_of, Hopper.counts_for_norm.is_(False))),
    )
    by_hand = exists().where(and_(made_of, Hopper.reason == "manual"))
    named = exists().where(made_of)
    query = select(
        Call.id,
        Call.caller,
        Call.started_at,
        Call.answered_by,
        Call.team_id,
        Call.outcome,
        by_hand,
        named,
    ).where(
        Call.started_at >= start,
        Call.started_at < end,
        Call.answered_by != "",
        ~acquisitie,
    )
    if team is not None:
        query = query.where(Call.answered_by == team)
    answered: list[Answered] = []
    async for rows in _in_turns(await session.execute(query.order_by(Call.started_at))):
        for call_id, caller, started, answered_by, final, outcome, manual, has_hopper in rows:
            answered.append(
                Answered(
                    id=call_id,
                    caller=caller or "",
                    started_at=started,
                    team=answered_by,
                    final_team=final,
                    hopper=outcome in HOPPER_OUTCOMES or bool(has_hopper),
                    passed_on=final not in ("", answered_by) and not manual,
                )
            )
    return answered


async def _in_turns(result: Result[*_Ts]) -> AsyncIterator[Sequence[Row[*_Ts]]]:
    """A buffered result's rows YIELD_EVERY at a time, the event loop's turn between them:
    the rows' values are made as they are fetched, which for a day of calls at once held
    the loop for a tenth of a second and more."""
    for rows in result.partitions(YIELD_EVERY):
        yield rows
        await asyncio.sleep(0)


async def first_line_by_day(
    session: AsyncSession, config: Config, start: datetime, end: datetime
) -> dict[date, dict[str, FirstLine]]:
    """(local day -> team -> figures) for the calls started in [start, end)."""
    zone = ZoneInfo(config.exchange.timezone)
    days: dict[date, dict[str, FirstLine]] = defaultdict(lambda: defaultdict(FirstLine))
    answered: list[tuple[str, datetime, FirstLine]] = []
    for n, call in enumerate(await answered_calls(session, start, end), 1):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        figures = days[call.started_at.astimezone(zone).date()]
        mine = figures[call.team]
        mine.answered += 1
        mine.hoppers += int(call.hopper)
        mine.passed_on += int(call.passed_on)
        mine.handled += int(call.handled)
        if call.passed_on:
            figures[call.final_team].transfers_in += 1
        if KNOWN_NUMBER.match(call.caller):
            mine._numbers.add(call.caller)
            answered.append((call.caller, call.started_at, mine))
    if answered:
        await _repeats(session, config, answered)
    for figures in days.values():
        for mine in figures.values():
            mine.callers, mine.repeat_callers = len(mine._numbers), len(mine._repeats)
    return {day: dict(teams) for day, teams in days.items()}


async def _repeats(
    session: AsyncSession, config: Config, answered: list[tuple[str, datetime, FirstLine]]
) -> None:
    """Mark the callers that called again within their answered call's window."""
    days = config.norms.repeat_days
    zone = ZoneInfo(config.exchange.timezone)
    ends: dict[date, datetime] = {}  # the window's end depends only on the call's local day

    def end_of(started: datetime) -> datetime:
        day = started.astimezone(zone).date()
        if day not in ends:
            ends[day] = _repeat_end(started, days, config)
        return ends[day]

    numbers = sorted({caller for caller, _, _ in answered})
    first = min(started for _, started, _ in answered)
    last = max(end_of(started) for _, started, _ in answered)
    later: dict[str, list[datetime]] = defaultdict(list)
    # In slices: a long period's numbers would make one IN list too long for SQLite.
    for i in range(0, len(numbers), 500):
        found = await session.execute(
            select(Call.caller, Call.started_at).where(
                Call.caller.in_(numbers[i : i + 500]),
                Call.started_at > first,
                Call.started_at < last,
            )
        )
        async for rows in _in_turns(found):
            for caller, started in rows:
                later[caller].append(started)
    for times in later.values():
        times.sort()
    for n, (caller, started, mine) in enumerate(answered, 1):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        times = later[caller]
        # The first call from the number more than a second later (the same call seen twice
        # is no repeat), found by bisection in its sorted calls: a scan of them per answered
        # call made one number called from thousands of times a day (a test line, a
        # dialler, an attacker) cost the event loop seconds every refresh, and FastAGI's
        # admission control then turned every caller away.
        later_one = bisect.bisect_right(times, started + timedelta(seconds=1))
        if later_one < len(times) and times[later_one] < end_of(started):
            mine._repeats.add(caller)


async def first_line(
    session: AsyncSession, config: Config, start: datetime, end: datetime
) -> dict[str, FirstLine]:
    """Per team, over the whole period [start, end)."""
    total: dict[str, FirstLine] = defaultdict(FirstLine)
    for teams in (await first_line_by_day(session, config, start, end)).values():
        for team, figures in teams.items():
            total[team].add(figures)
    return dict(total)


def today_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    local = now.astimezone(ZoneInfo(tz))
    midnight = datetime.combine(local.date(), time.min, ZoneInfo(tz))
    return midnight.astimezone(UTC), now


async def today(services: Services, now: datetime | None = None) -> dict[str, FirstLine]:
    """Per team today, up to `now`. Without `now` the live figures: computed at most once
    every INTERVAL_SECONDS in this process and shared by the worker and every open board,
    since each computing reads every call answered today."""
    if now is None:
        return await services.caches.recent(
            "first-line today", INTERVAL_SECONDS, lambda: today(services, datetime.now(UTC))
        )
    config = services.config
    start, end = today_bounds(now, config.exchange.timezone)
    async with services.reads() as session:
        return await first_line(session, config, start, end + timedelta(seconds=1))


async def board_part(services: Services) -> dict[str, object]:
    """The board's first-line row: per team today, and the target line."""
    config = services.config
    found = await today(services)
    teams = [KCC, *(t.id for t in config.teams)]
    return {
        "target": config.norms.first_line_target,
        "repeat_days": config.norms.repeat_days,
        "teams": {team: found.get(team, FirstLine()).as_json() for team in teams},
    }


async def refresh(services: Services, now: datetime | None = None) -> dict[str, FirstLine]:
    """Today's first-line gauges on /metrics."""
    found = await today(services, now)
    teams = [KCC, *(t.id for t in services.config.teams)]
    figures = {team: found.get(team, FirstLine()) for team in teams}
    services.metrics.first_line.set(
        {team: (f.share, f.repeat_share, f.transfers_in) for team, f in figures.items()},
        services.config.norms.first_line_target,
    )
    return found


async def run(services: Services, interval: float | None = None) -> None:
    # A day's figure moves slowly; every ten seconds is fresh enough for a wall screen and
    # costs two queries over today's calls, and longer waits on a busy day (COST_FACTOR).
    # By the store's policy: waited out while the store is down; any other fault the
    # supervisor's (cti/supervisor.py), which shows the part down rather than a gauge that
    # silently stops moving.
    pause = interval or INTERVAL_SECONDS

    async def refresh_and_rest() -> None:
        clock = asyncio.get_running_loop().time
        began = clock()
        await refresh(services)
        await asyncio.sleep(
            min(MAX_REST_SECONDS, max(0.0, COST_FACTOR * (clock() - began) - pause))
        )

    await every(pause, refresh_and_rest, what="the first-line figures", logger=log)
