"""The figures of a report ("stuurinformatie"): per team and per employee, for one period.

Computed from the ``calls`` and ``hoppers`` tables with the definitions of the live norm
(cti/calls/norms.py), applied to a calendar period instead of a rolling window:

* a call belongs to the period by ``started_at``, a hopper by ``created_at``; periods are
  whole local days in the exchange's time zone (a month ``2026-11``, an ISO week
  ``2026-W48`` or the days ``2026-11-02..2026-11-15``);
* calls answered: outcome ``answered_kcc``/``answered_team``, per team (``team_id``) and per
  employee (``agent``, the extension that answered for that team);
* hoppers handled: closed hoppers of the team in the period, per employee by ``closed_by``
  (shown as the user's extension when the user has one, so a person has one row);
  within norm: of those, ``within_norm`` true;
* share within norm: met / decided exactly as the live norm (``call_norm``): met = answered
  calls + hoppers closed within the norm; decided = met + callers who hung up while waiting
  for a person (short abandons excepted) + hoppers closed late + open hoppers past their
  deadline; acquisitie hoppers (``counts_for_norm`` false) and calls categorised
  ``acquisitie`` are left out. ``None`` when nothing is decided;
* question categories: ``category`` of the team's calls and hoppers (empty = "onbekend").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.calls.norms import ANSWERED_OUTCOMES, call_norm
from cti.reports.firstline import FirstLine, first_line
from cti.store.models import Call, Hopper, User
from cti.survey import service as survey_service
from dialplan.config import Config

KCC = "kcc"


class PeriodError(ValueError):
    """A period (or team) that cannot be reported; ``reason`` names it for the screen's
    translated text, the message says it in English for the command line."""

    def __init__(self, message: str, reason: str = "bad period") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Period:
    label: str  # 2026-11 or 2026-W48
    first_day: date
    end_day: date  # exclusive

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """The period as UTC instants, from local midnight to local midnight."""
        zone = ZoneInfo(tz)
        start = datetime.combine(self.first_day, datetime.min.time(), zone)
        end = datetime.combine(self.end_day, datetime.min.time(), zone)
        return start.astimezone(UTC), end.astimezone(UTC)


# A custom period is at most a year: a report over more is a different question (and a
# slow one on a large calls table).
MAX_DAYS = 366


def parse_period(text: str) -> Period:
    """``2026-11`` (a month), ``2026-W48`` (an ISO week) or ``2026-11-02..2026-11-15``
    (first and last day, both included)."""
    if match := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"{text}: month must be 01-12", "bad period")
        first = date(year, month, 1)
        end = date(year + (month == 12), month % 12 + 1, 1)
        return Period(text, first, end)
    if match := re.fullmatch(r"(\d{4})-W(\d{2})", text):
        try:
            first = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise PeriodError(f"{text}: no such ISO week", "no such week") from None
        return Period(text, first, first + timedelta(days=7))
    if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
        try:
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
        except ValueError:
            raise PeriodError(f"{text}: no such date", "no such date") from None
        if last < first:
            raise PeriodError(f"{text}: the last day is before the first", "days reversed")
        if (last - first).days >= MAX_DAYS:
            raise PeriodError(f"{text}: at most {MAX_DAYS} days", "period too long")
        return Period(text, first, last + timedelta(days=1))
    raise PeriodError(
        f"{text}: give a month (2026-11), an ISO week (2026-W48) "
        "or two days (2026-11-02..2026-11-15)"
    )


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class Employee:
    name: str  # an extension (calls) or a user name (hoppers)
    calls_answered: int = 0
    hoppers_handled: int = 0
    hoppers_within_norm: int = 0
    # Post-call survey per question, only from survey.min_answers_per_agent answers on.
    survey: dict[str, str] = field(default_factory=dict)


@dataclass
class TeamFigures:
    team: str
    name: str
    calls_offered: int = 0  # calls that ended with this team (any outcome)
    calls_answered: int = 0
    calls_abandoned: int = 0
    hoppers_created: int = 0
    hoppers_handled: int = 0
    hoppers_within_norm: int = 0
    hoppers_late: int = 0  # closed past the deadline
    hoppers_open_overdue: int = 0
    norm_met: int = 0
    norm_decided: int = 0
    employees: dict[str, Employee] = field(default_factory=dict)
    categories: Counter[str] = field(default_factory=Counter)
    survey: dict[str, str] = field(default_factory=dict)  # question id -> "4.2 (n=31)"
    # First-line resolution (cti/reports/firstline.py), once add_first_line ran.
    first_line: FirstLine | None = None

    @property
    def norm_share(self) -> float | None:
        return self.norm_met / self.norm_decided if self.norm_decided else None

    def employee(self, name: str) -> Employee:
        return self.employees.setdefault(name, Employee(name))


@dataclass
class Report:
    period: Period
    generated_at: datetime
    teams: list[TeamFigures]
    first_line_target: float = 0.8  # norms.first_line_target, set by add_first_line
    repeat_days: int = 5  # norms.repeat_days


async def build_report(
    session: AsyncSession,
    period: Period,
    teams: list[tuple[str, str]],  # (id, display name), in the order to show
    tz: str,
    now: datetime | None = None,
    short_abandon_seconds: float = 5.0,  # config.queue.short_abandon_seconds
) -> Report:
    now = now or datetime.now(UTC)
    start, end = period.bounds(tz)
    figures = {team: TeamFigures(team, name) for team, name in teams}

    # The norm's definition of a call is the board's (cti/calls/norms.py), so the report
    # and the wall screen never disagree on what counts: 1 met, -1 missed, 0 left out.
    met, missed, left_out = call_norm(short_abandon_seconds)
    norm = case((left_out, 0), (met, 1), (missed, -1), else_=0)
    calls = await session.execute(
        select(Call.team_id, Call.outcome, Call.agent, Call.category, norm).where(
            Call.started_at >= start, Call.started_at < end, Call.outcome != ""
        )
    )
    for team_id, outcome, agent, category, counted in calls.all():
        team = figures.get(team_id or KCC)
        if team is None:
            continue
        team.calls_offered += 1
        team.categories[category or "onbekend"] += 1
        if outcome in ANSWERED_OUTCOMES:
            team.calls_answered += 1
            team.employee(agent or "onbekend").calls_answered += 1
        elif outcome == "abandoned":
            team.calls_abandoned += 1
        team.norm_met += int(counted == 1)
        team.norm_decided += int(counted != 0)

    hoppers = await session.execute(
        select(
            Hopper.team_id,
            Hopper.status,
            Hopper.within_norm,
            Hopper.closed_by,
            Hopper.deadline,
            Hopper.counts_for_norm,
            Hopper.category,
            Hopper.call_uniqueid,
        ).where(Hopper.created_at >= start, Hopper.created_at < end)
    )
    # A hopper is closed by a user, a call answered on an extension: one row per person.
    extensions = dict(
        (await session.execute(select(User.name, User.extension).where(User.extension != ""))).all()
    )
    for team_id, status, within, closed_by, deadline, counts, category, uniqueid in hoppers.all():
        team = figures.get(team_id)
        if team is None:
            continue
        team.hoppers_created += 1
        if not uniqueid:
            team.categories[category or "onbekend"] += 1  # not counted with a call already
        if status == "closed":
            team.hoppers_handled += 1
            person = team.employee(extensions.get(closed_by) or closed_by or "onbekend")
            person.hoppers_handled += 1
            if within and counts:
                team.hoppers_within_norm += 1
                person.hoppers_within_norm += 1
        if not counts:
            continue
        if status == "closed" and within is not None:
            team.norm_decided += 1
            team.norm_met += int(bool(within))
            team.hoppers_late += int(not within)
        elif status == "open" and deadline < now:
            team.hoppers_open_overdue += 1
            team.norm_decided += 1
    return Report(period, now, list(figures.values()))


def survey_text(figure: survey_service.Figure) -> str:
    if figure.average is not None:
        return f"{figure.average:.1f} gemiddeld (n={figure.answers})"
    return f"{(figure.yes_ratio or 0) * 100:.0f} % ja (n={figure.answers})"


async def add_survey(
    session: AsyncSession, report: Report, config: Config, per_agent: bool = True
) -> None:
    """The post-call survey's figures into the report: per team, and per employee only
    from ``survey.min_answers_per_agent`` answers on and only with `per_agent` (a report
    goes to the team lead; the reports screen shows a supervisor the team's alone)."""
    start, end = report.period.bounds(config.exchange.timezone)
    teams = await survey_service.figures(session, config, start, end)
    for team in report.teams:
        for question in config.survey.questions:
            figure = teams.get((team.team, question.id))
            if figure is not None:
                team.survey[question.id] = survey_text(figure)
        if not per_agent:
            continue
        found = await survey_service.agent_figures(session, config, team.team, start, end)
        for (agent, question_id), figure in sorted(found.items()):
            team.employee(agent).survey[question_id] = survey_text(figure)


async def add_first_line(session: AsyncSession, report: Report, config: Config) -> None:
    """First-line resolution per team into the report, with the configured target."""
    start, end = report.period.bounds(config.exchange.timezone)
    found = await first_line(session, config, start, end)
    report.first_line_target = config.norms.first_line_target
    report.repeat_days = config.norms.repeat_days
    for team in report.teams:
        team.first_line = found.get(team.team, FirstLine())
