"""The KCC agent's screen and the supervisor's board."""

from __future__ import annotations

from aiohttp import web

from cti.calls.gauges import board_figures
from cti.web.auth import require_role
from cti.web.context import SERVICES
from cti.web.pages import render


def setup(app: web.Application) -> None:
    app.router.add_get("/kcc", kcc_page)
    app.router.add_get("/board", board_page)
    app.router.add_get("/api/board", board_json)


async def kcc_page(request: web.Request) -> web.Response:
    user = require_role(request, "agent")
    config = request.app[SERVICES].config
    teams = {t.id: t for t in config.teams}
    routing = [
        {
            "category": category,
            "team": teams[team_id].name,
            "team_id": team_id,
            "number": teams[team_id].number,
        }
        for category, team_id in sorted(config.categories.items())
    ]
    return render(
        request, "kcc.html", routing=routing, teams=config.teams, extension=user.extension
    )


async def board_page(request: web.Request) -> web.Response:
    require_role(request, "supervisor", "lead")
    figures = await board_figures(request.app[SERVICES])
    return render(request, "board.html", figures=figures)


async def board_json(request: web.Request) -> web.Response:
    require_role(request, "supervisor", "lead")
    return web.json_response(await board_figures(request.app[SERVICES]))
