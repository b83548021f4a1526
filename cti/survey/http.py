"""The survey's figures: GET /api/survey?period=today|7d|28d, and the board's survey row.

Team figures (the KCC and every team: answers, average of a score question, share of yes)
are for every signed-in role, like the wall screen. Figures per agent only for the agent
themself (their own extension) and the lead of their team, and only for agents with at
least ``survey.min_answers_per_agent`` answers in the period (privacy: no single answer
can be traced to a call).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cti.calls.norms import window_starts
from cti.calls.pages import BOARD_PARTS
from cti.services import Services
from cti.store.models import User
from cti.survey import service
from cti.web.auth import current_user
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from dialplan.config import KCC_ID
from metrics.registry import NORM_WINDOWS


def _json(found: dict[tuple[str, str], service.Figure]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (who, question), figure in sorted(found.items()):
        out.setdefault(who, {})[question] = {
            "answers": figure.answers,
            "average": figure.average,
            "yes_ratio": figure.yes_ratio,
        }
    return out


async def team_figures(services: Services, period: str = "today") -> dict[str, Any]:
    """Per team (and the KCC): what the board's survey row and /api/survey show."""
    config = services.config
    since = window_starts(datetime.now(UTC), config.exchange.timezone)[period]
    async with services.sessions() as session:
        found = await service.figures(session, config, since)
    return {
        "period": period,
        "questions": [q.model_dump() for q in config.survey.questions],
        "teams": _json(found),
    }


def agent_scope(user: User) -> tuple[str, str] | None:
    """(team, extension or "" for all of the team) the user may see per agent, or None."""
    if user.role == "lead" and user.team_id:
        return user.team_id, ""
    if user.role in ("member", "agent") and user.extension:
        return (user.team_id or KCC_ID), user.extension
    return None


async def get_survey(request: web.Request) -> web.Response:
    user = current_user(request)
    period = request.query.get("period", "today")
    if period not in NORM_WINDOWS:
        raise json_error(f"period must be one of {', '.join(NORM_WINDOWS)}")
    services = request.app[SERVICES]
    result = await team_figures(services, period)
    scope = agent_scope(user)
    agents: dict[tuple[str, str], service.Figure] = {}
    if scope is not None:
        team, extension = scope
        since = window_starts(datetime.now(UTC), services.config.exchange.timezone)[period]
        async with services.sessions() as session:
            found = await service.agent_figures(session, services.config, team, since, None)
        agents = {k: v for k, v in found.items() if not extension or k[0] == extension}
    result["agents"] = _json(agents)
    result["min_answers_per_agent"] = services.config.survey.min_answers_per_agent
    return web.json_response(result)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/survey", get_survey)
    if any(app[SERVICES].config.survey.shares.values()):
        app[BOARD_PARTS]["survey"] = team_figures
