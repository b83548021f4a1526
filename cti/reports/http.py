"""The reports' downloads: `/reports/<chart>.csv` for the period and team on the screen.

The screen and the downloads read their choice from the same query (``selection``): a
period kind (week, month, custom) with its fields, and a team. A team lead sees only their
own team, whatever the query asks; a supervisor and an admin pick any team or the KCC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from cti.calls.pages import BOARD_PARTS
from cti.reports import firstline
from cti.reports.figures import Period, PeriodError, parse_period
from cti.reports.service import (
    CSV_NAMES,
    Screen,
    build_screen,
    default_week,
    period_text,
    to_csv_of,
)
from cti.reports.service import teams_of as configured_teams
from cti.store.models import User
from cti.web.auth import forbidden, require_role
from cti.web.context import SERVICES

ROLES = ("lead", "supervisor")  # and admin, who passes every role check


def setup(app: web.Application) -> None:
    app.router.add_get("/reports/{name}.csv", download)
    app[BOARD_PARTS]["first_line"] = firstline.board_part


@dataclass
class Selection:
    kind: str
    week: str
    month: str
    first: str
    last: str
    team: str
    teams: list[tuple[str, str]]  # the teams this user may pick

    @property
    def query(self) -> str:
        """The same choice as a query string, for the download links."""
        return urlencode(
            {
                "kind": self.kind,
                "week": self.week,
                "month": self.month,
                "from": self.first,
                "to": self.last,
                "team": self.team,
            }
        )


def selection(request: web.Request, user: User) -> Selection:
    config = request.app[SERVICES].config
    tz = config.exchange.timezone
    query = request.query
    now = datetime.now(UTC)
    week = query.get("week") or default_week(now, tz)
    teams = configured_teams(config, [])
    if user.role == "lead":
        if not user.team_id:
            raise forbidden("a team lead without a team has no reports")
        teams = [(t, n) for t, n in teams if t == user.team_id]
        team = user.team_id
        if query.get("team", team) != team:
            raise forbidden("this belongs to another team")
    else:
        team = query.get("team") or teams[0][0]
    kind = query.get("kind", "week")
    return Selection(
        kind if kind in ("week", "month", "custom") else "week",
        week,
        query.get("month") or f"{now.astimezone(ZoneInfo(tz)):%Y-%m}",
        query.get("from", ""),
        query.get("to", ""),
        team,
        teams,
    )


def period_of(chosen: Selection) -> Period:
    """The chosen period; PeriodError (with the reason) for a wrong one."""
    if chosen.team not in {t for t, _ in chosen.teams}:
        raise PeriodError(f"unknown team {chosen.team}", "unknown team")
    if chosen.kind == "custom" and not (chosen.first and chosen.last):
        raise PeriodError("give the first and the last day", "days missing")
    return parse_period(
        period_text(chosen.kind, chosen.week, chosen.month, chosen.first, chosen.last)
    )


async def screen_of(request: web.Request, user: User, chosen: Selection, period: Period) -> Screen:
    """The chosen team's screen. The survey per employee is for the team's lead alone
    (selection() keeps a lead to their own team); a supervisor sees the team's figure."""
    services = request.app[SERVICES]
    async with services.reads() as session:
        return await build_screen(
            session,
            services.config,
            period,
            chosen.team,
            survey_per_agent=user.role == "lead",
        )


async def download(request: web.Request) -> web.Response:
    user = require_role(request, *ROLES)
    name = request.match_info["name"]
    if name not in CSV_NAMES:
        raise web.HTTPNotFound(text=f"no such download; there are: {', '.join(CSV_NAMES)}")
    chosen = selection(request, user)
    try:
        period = period_of(chosen)
    except PeriodError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    screen = await screen_of(request, user, chosen, period)
    filename = f"bereik-{name}-{chosen.team}-{period.label}.csv".replace("..", "_")
    return web.Response(
        text=to_csv_of(screen, name),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
