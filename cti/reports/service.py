"""The reports screen's figures: `bereik report` for one team and period, and its series.

The screen shows the same report as `bereik report` (``build_report``, the one place the
figures are defined), and beside it what a chart needs:

* per ISO week of the period (clipped to it): the composite norm of that week's report,
  the service level (calls answered within ``queue.service_level_seconds`` / answered +
  abandoned after ``queue.short_abandon_seconds``, as on the board), and the team's
  callbacks (hoppers) closed within the deadline, closed past it, and open past it;
* calls offered, answered and abandoned per local weekday and hour (the heat map);
* the question categories, most asked first, with the cumulative share (Pareto).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.calls.norms import ANSWERED_OUTCOMES
from cti.reports.figures import (
    KCC,
    Period,
    PeriodError,
    Report,
    TeamFigures,
    add_first_line,
    add_survey,
    build_report,
    iso_week,
)
from cti.reports.firstline import Answered, FirstLine, answered_calls, first_line_by_day
from cti.reports.render import to_csv
from cti.store.models import Call
from dialplan.config import Config

WEEKDAYS = 7
NOT_HANDLED_SHOWN = 50
HOURS = 24


def teams_of(config: Config, wanted: list[str]) -> list[tuple[str, str]]:
    """(id, name) of the wanted teams in the configuration's order; all when none is named."""
    known = [(KCC, "KCC"), *((team.id, team.name) for team in config.teams)]
    if not wanted:
        return known
    unknown = sorted(set(wanted) - {team for team, _ in known})
    if unknown:
        names = ", ".join(team for team, _ in known)
        raise PeriodError(f"unknown team {unknown[0]}; teams are: {names}")
    return [(team, name) for team, name in known if team in wanted]


@dataclass
class Week:
    label: str  # 2026-W48
    norm: float | None
    service_level: float | None
    in_level: int  # answered within the seconds
    counted: int  # answered + abandoned after the short-abandon seconds
    within: int  # hoppers closed within the deadline
    late: int  # hoppers closed past the deadline
    overdue: int  # hoppers still open past the deadline


@dataclass
class Hour:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0


@dataclass
class Category:
    name: str
    count: int
    cumulative: float  # share of all categorised contacts up to and including this one


@dataclass
class Screen:
    report: Report  # the team's report, as `bereik report --team` makes it
    team: TeamFigures
    weeks: list[Week]
    hours: list[list[Hour]]  # [weekday 0 = Monday][local hour]
    pareto: list[Category]
    # First-line resolution per local day of the period on which the team answered or
    # received calls (the report's team figure is the period's total).
    first_line_days: list[tuple[date, FirstLine]] = field(default_factory=list)
    # The team's answered calls it did not handle itself, newest first (at most
    # NOT_HANDLED_SHOWN): each links to its journey, to see why.
    not_handled: list[Answered] = field(default_factory=list)

    def employee_share(self, name: str) -> float | None:
        """Of the hoppers this employee closed, the share closed within the norm."""
        person = self.team.employees[name]
        return (
            person.hoppers_within_norm / person.hoppers_handled if person.hoppers_handled else None
        )


def weeks_of(period: Period) -> list[Period]:
    """The ISO weeks the period touches, each clipped to the period."""
    monday = period.first_day - timedelta(days=period.first_day.weekday())
    weeks = []
    while monday < period.end_day:
        first, end = max(monday, period.first_day), min(monday + timedelta(days=7), period.end_day)
        weeks.append(Period(iso_week(monday), first, end))
        monday += timedelta(days=7)
    return weeks


async def build_screen(
    session: AsyncSession,
    config: Config,
    period: Period,
    team_id: str,
    now: datetime | None = None,
    survey_per_agent: bool = False,
) -> Screen:
    """The screen of one team; the post-call survey per employee only with
    `survey_per_agent` (the team's lead), the team's survey figures always."""
    now = now or datetime.now(UTC)
    tz = config.exchange.timezone
    team = teams_of(config, [team_id])
    short = config.queue.short_abandon_seconds
    report = await build_report(session, period, team, tz, now, short)
    await add_survey(session, report, config, per_agent=survey_per_agent)
    await add_first_line(session, report, config)
    start, end = period.bounds(tz)
    by_day = await first_line_by_day(session, config, start, end)
    days = sorted((day, teams[team_id]) for day, teams in by_day.items() if team_id in teams)
    passed = [c for c in await answered_calls(session, start, end, team_id) if not c.handled]
    passed = passed[::-1][:NOT_HANDLED_SHOWN]
    calls = await _calls(session, period, team_id, tz)
    weeks = []
    for week in weeks_of(period):
        figures = (await build_report(session, week, team, tz, now, short)).teams[0]
        in_level, counted = _service_level(config, calls, week, tz)
        weeks.append(
            Week(
                week.label,
                figures.norm_share,
                in_level / counted if counted else None,
                in_level,
                counted,
                figures.hoppers_within_norm,
                figures.hoppers_late,
                figures.hoppers_open_overdue,
            )
        )
    figures = report.teams[0]
    return Screen(report, figures, weeks, _hours(calls, tz), _pareto(figures), days, passed)


async def _calls(
    session: AsyncSession, period: Period, team_id: str, tz: str
) -> list[tuple[datetime, str, float | None]]:
    start, end = period.bounds(tz)
    # The same calls as the report's: the KCC's are those without a team.
    of_team = (
        or_(Call.team_id == "", Call.team_id == KCC)
        if team_id == KCC
        else (Call.team_id == team_id)
    )
    rows = await session.execute(
        select(Call.started_at, Call.outcome, Call.wait_seconds).where(
            Call.started_at >= start, Call.started_at < end, Call.outcome != "", of_team
        )
    )
    return [(started, outcome, wait) for started, outcome, wait in rows.all()]


def _service_level(
    config: Config, calls: list[tuple[datetime, str, float | None]], week: Period, tz: str
) -> tuple[int, int]:
    start, end = week.bounds(tz)
    level, short = config.queue.service_level_seconds, config.queue.short_abandon_seconds
    in_level = counted = 0
    for started, outcome, wait in calls:
        if not start <= started < end:
            continue
        if outcome in ANSWERED_OUTCOMES:
            counted += 1
            in_level += int(wait is not None and wait <= level)
        elif outcome == "abandoned" and (wait is None or wait >= short):
            counted += 1  # an unknown wait counts as missed, as on the board
    return in_level, counted


def _hours(calls: list[tuple[datetime, str, float | None]], tz: str) -> list[list[Hour]]:
    zone = ZoneInfo(tz)
    grid = [[Hour() for _ in range(HOURS)] for _ in range(WEEKDAYS)]
    for started, outcome, _ in calls:
        local = started.astimezone(zone)
        cell = grid[local.weekday()][local.hour]
        cell.offered += 1
        cell.answered += int(outcome in ANSWERED_OUTCOMES)
        cell.abandoned += int(outcome == "abandoned")
    return grid


def _pareto(team: TeamFigures) -> list[Category]:
    total = sum(team.categories.values())
    result, running = [], 0
    for name, count in team.categories.most_common():
        running += count
        result.append(Category(name, count, running / total))
    return result


# --- CSV: one download per chart, and the whole report as `bereik report` writes it ---

CSV_NAMES = ("report", "norm", "hours", "callbacks", "categories", "employees")


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def to_csv_of(screen: Screen, name: str) -> str:
    if name == "report":
        return to_csv(screen.report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if name == "norm":
        writer.writerow(["week", "norm", "service_level", "answered_in_level", "counted"])
        for w in screen.weeks:
            writer.writerow(
                [w.label, _share(w.norm), _share(w.service_level), w.in_level, w.counted]
            )
    elif name == "hours":
        writer.writerow(["weekday", "hour", "offered", "answered", "abandoned"])
        for day, row in enumerate(screen.hours):
            for hour, cell in enumerate(row):
                if cell.offered:
                    writer.writerow([day + 1, hour, cell.offered, cell.answered, cell.abandoned])
    elif name == "callbacks":
        writer.writerow(["week", "within_deadline", "closed_late", "open_overdue"])
        for w in screen.weeks:
            writer.writerow([w.label, w.within, w.late, w.overdue])
    elif name == "categories":
        writer.writerow(["category", "count", "cumulative_share"])
        for c in screen.pareto:
            writer.writerow([c.name, c.count, f"{c.cumulative:.4f}"])
    elif name == "employees":
        writer.writerow(
            ["employee", "calls_answered", "hoppers_handled", "hoppers_within_norm", "share"]
        )
        for who in sorted(screen.team.employees):
            p = screen.team.employees[who]
            share = _share(screen.employee_share(who))
            writer.writerow(
                [who, p.calls_answered, p.hoppers_handled, p.hoppers_within_norm, share]
            )
    else:
        raise KeyError(name)
    return out.getvalue()


def default_week(now: datetime, tz: str) -> str:
    return iso_week(now.astimezone(ZoneInfo(tz)).date())


def period_text(kind: str, week: str, month: str, first: str, last: str) -> str:
    """The screen's picker as the CLI's --period text (so both parse it one way)."""
    if kind == "month":
        return month
    if kind == "custom":
        return f"{first}..{last}"
    return week


def day_label(day: date) -> str:
    return f"{day:%d-%m-%Y}"
