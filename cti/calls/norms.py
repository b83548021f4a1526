"""The telephone service norm, computed from the database.

The norm (DOMAIN.md): "answered directly, or called back within 2 working days, > 90 %",
set per team. It is computed from the ``calls`` and ``hoppers`` tables, not from counters in
memory, so a restart of ``bereik serve`` does not reset it and every process (or a report)
computing it gets the same figure.

Definition, per team and window:

* Windows: ``today`` is since local midnight in the exchange's time zone (Europe/Amsterdam);
  ``7d`` and ``28d`` are the rolling 7 × 24 h and 28 × 24 h before ``now``. A call belongs to
  a window by ``calls.started_at``, a hopper by ``hoppers.created_at``; nothing after ``now``
  counts.
* Team: a call's ``team_id``; a call with no team (or team "kcc") belongs to the KCC, as team
  ``"kcc"``. A hopper belongs to its ``team_id``. Only the teams asked for (plus "kcc") get a
  figure, so a stray team id in the database cannot create a metric label.
* Met: a call answered directly (outcome ``answered_team`` or ``answered_kcc``), plus a
  hopper closed with ``within_norm`` true.
* Decided: the met ones, plus hoppers closed with ``within_norm`` false, plus open hoppers
  already past their deadline: the norm is missed whatever happens next.
* Not decided, so in neither number: an open hopper before its deadline (it may still be
  called back in time), and a closed hopper whose ``within_norm`` is NULL (outside the norm's
  scope).
* Excluded: hoppers with ``counts_for_norm`` false (acquisitie: sales calls are not a
  citizen's question), answered calls whose hopper is such a hopper, and calls the agent
  categorised ``acquisitie``.
* Missed, too: a caller who hung up while waiting for a person (outcome ``abandoned`` with
  a team: in the KCC's waiting line or while a team number rang), after at least
  ``short_abandon_seconds`` (default 5) of waiting. They got neither an answer nor a
  callback. Hanging up sooner is left out: that is a wrong number or a change of mind,
  not a caller kept waiting. One who got a hopper for it afterwards
  (``queue.callback_abandoned``), or was linked to their open one, counts through that
  hopper only.
* Not counted at all: calls that ended otherwise without a hopper (abandoned in the menu,
  closed, information only, short abandons): a caller who left the menu asked nobody. A
  call that ended in a hopper is counted through its hopper, never twice.
* Ratio: met / decided; ``None`` when nothing is decided, so no gauge is exported rather
  than a misleading 0 or 100 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from cti.store.models import Call, Hopper, HopperEvent
from dialplan.config import ACQUISITION

KCC = "kcc"
ANSWERED_OUTCOMES = ("answered_team", "answered_kcc")
WINDOWS = ("today", "7d", "28d")


def window_starts(now: datetime, tz: str) -> dict[str, datetime]:
    """The start of each window for ``now`` (aware), as aware datetimes."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(tz))
    # Midnight by the wall clock, so on a DST change day "today" is 23 or 25 hours long.
    midnight = datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(tz))
    return {"today": midnight, "7d": now - timedelta(days=7), "28d": now - timedelta(days=28)}


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def call_norm(
    short_abandon_seconds: float,
) -> tuple[ColumnElement[bool], ColumnElement[bool], ColumnElement[bool]]:
    """What makes a call count in the norm, for every figure that shows it (the board's
    ratios here, `bereik report` and the reports screen): (met, missed, left out).

    Met: answered by a person. Missed: hung up while waiting for a person: a team was being
    offered the call (team_id set by the tracker), and not within the first seconds; an
    unknown wait counts as missed. Left out: a call categorised acquisitie, or answered
    while an acquisitie hopper was made of it (a sales call is no citizen served)."""
    acquisitie = or_(
        Call.category == ACQUISITION,
        exists().where(
            and_(Hopper.call_uniqueid == Call.uniqueid, Hopper.counts_for_norm.is_(False))
        ),
    )
    answered_call = Call.outcome.in_(ANSWERED_OUTCOMES)
    # A caller who gave up in the line and got a hopper for it afterwards (queue
    # .callback_abandoned makes it seconds after the hang-up, so the call keeps its outcome
    # "abandoned"), or was linked to their open one, is counted through that hopper: missed
    # here too, one call would count twice.
    called_back = exists().where(
        HopperEvent.call_uniqueid == Call.uniqueid,
        HopperEvent.kind.in_(("created", "repeat")),
    )
    gave_up = and_(
        Call.outcome == "abandoned",
        Call.team_id != "",
        or_(Call.wait_seconds.is_(None), Call.wait_seconds >= short_abandon_seconds),
        ~called_back,
    )
    return answered_call, gave_up, acquisitie


# (met, decided) per (team, window): what a ratio is made of, and adds up over periods.
Counts = dict[tuple[str, str], tuple[int, int]]


async def norm_ratios(
    session: AsyncSession,
    teams: list[str],
    now: datetime,
    tz: str,
    short_abandon_seconds: float = 5.0,
) -> dict[tuple[str, str], float | None]:
    """The norm ratio for every (team, window); teams are ``teams`` plus "kcc"."""
    counts = await norm_counts(
        session, teams, now, window_starts(now, tz), short_abandon_seconds, end=now
    )
    return ratios(counts)


def ratios(counts: Counts) -> dict[tuple[str, str], float | None]:
    return {key: (met / decided if decided else None) for key, (met, decided) in counts.items()}


def add_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two adjoining periods, as one."""
    total = dict(a)
    for key, (met, decided) in b.items():
        before_met, before_decided = total.get(key, (0, 0))
        total[key] = (before_met + met, before_decided + decided)
    return total


async def norm_counts(
    session: AsyncSession,
    teams: list[str],
    now: datetime,
    starts: Mapping[str, datetime],
    short_abandon_seconds: float,
    *,
    end: datetime,
) -> Counts:
    """(met, decided) for every (team, window) of `starts` (window -> its start), over
    calls and hoppers from the window's start until `end`: up to and including `end` when
    it is `now`, before it otherwise (a period that ends where another begins, so counts
    of adjoining periods add up). A hopper counts as missed when closed outside the norm
    or open past its deadline at `now`.

    Two grouped queries, one over calls and one over hoppers, each with a conditional count
    per window, so the cost does not grow with the number of teams or windows; it grows
    with the rows since the earliest window's start (28 days: most of its cost).
    """
    earliest = min(starts.values())
    wanted = list(dict.fromkeys([*teams, KCC]))
    met: dict[tuple[str, str], int] = {(t, w): 0 for t in wanted for w in starts}
    decided = dict(met)

    answered_call, gave_up, acquisitie = call_norm(short_abandon_seconds)
    columns = []
    for window in starts:
        columns.append(count_if(and_(answered_call, Call.started_at >= starts[window])))
        columns.append(count_if(and_(gave_up, Call.started_at >= starts[window])))
    answered = (
        select(Call.team_id, *columns)
        .where(
            or_(answered_call, gave_up),
            Call.started_at >= earliest,
            Call.started_at <= end if end == now else Call.started_at < end,
            ~acquisitie,
        )
        # Grouped by the plain column and mapped to "kcc" here: grouping by a CASE with bound
        # parameters is refused by PostgreSQL (the select's parameters differ from the group's).
        .group_by(Call.team_id)
    )
    for team_id, *found in (await session.execute(answered)).all():
        team = team_id or KCC
        for i, window in enumerate(starts):
            if (team, window) in met:
                hit, missed = int(found[2 * i]), int(found[2 * i + 1])
                met[team, window] += hit
                decided[team, window] += hit + missed

    closed = Hopper.status == "closed"
    in_norm = and_(closed, Hopper.within_norm.is_(True))
    out_norm = and_(closed, Hopper.within_norm.is_(False))
    overdue = and_(Hopper.status == "open", Hopper.deadline < now)
    columns = []
    for window in starts:
        in_window = Hopper.created_at >= starts[window]
        columns.append(count_if(and_(in_window, in_norm)))
        columns.append(count_if(and_(in_window, or_(out_norm, overdue))))
    hoppers = (
        select(Hopper.team_id, *columns)
        .where(
            Hopper.counts_for_norm.is_(True),
            Hopper.created_at >= earliest,
            Hopper.created_at <= end if end == now else Hopper.created_at < end,
        )
        .group_by(Hopper.team_id)
    )
    for team, *found in (await session.execute(hoppers)).all():
        for i, window in enumerate(starts):
            if (team, window) in met:
                hit, missed = int(found[2 * i]), int(found[2 * i + 1])
                met[team, window] += hit
                decided[team, window] += hit + missed

    return {key: (met[key], decided[key]) for key in met}


async def hopper_gauges(session: AsyncSession, now: datetime) -> dict[str, tuple[int, int]]:
    """(open, overdue) hoppers per team that has any open; overdue = open past deadline.

    All open hoppers count, acquisitie ones too: an open hopper is work nobody has closed,
    and an overdue one is exactly what the team lead should see.
    """
    query = (
        select(Hopper.team_id, func.count(), count_if(Hopper.deadline < now))
        .where(Hopper.status == "open")
        .group_by(Hopper.team_id)
    )
    return {
        team: (int(open_), int(overdue))
        for team, open_, overdue in (await session.execute(query)).all()
    }


async def calls_started_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Calls started since `since`, by team ("" for calls that reached no team)."""
    rows = await session.execute(
        select(Call.team_id, func.count()).where(Call.started_at >= since).group_by(Call.team_id)
    )
    return {team: int(count) for team, count in rows.all()}
