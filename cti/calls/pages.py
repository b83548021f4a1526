"""The KCC agent's screen and the supervisor's board."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cti.calls.gauges import board_figures
from cti.health import HEALTH
from cti.services import Services
from cti.web.auth import current_user, mask_number, require_role
from cti.web.context import SERVICES
from cti.web.pages import render

# More rows for the board from features above this one (the waiting line adds "queue"):
# they register here, so the board does not import them.
BoardPart = Callable[[Services], Awaitable[dict[str, Any]]]
BOARD_PARTS = web.AppKey("board_parts", dict[str, BoardPart])


def setup(app: web.Application) -> None:
    app[BOARD_PARTS] = {}
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


async def _board(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    figures = await board_figures(services)
    for name, part in request.app[BOARD_PARTS].items():
        figures[name] = await part(services)
    line = figures.get("queue")
    if line is not None:
        # One meaning of "waiting" on the board: the team table's KCC cell is the line's
        # own count (callers in the line or hearing its entry messages), not a second
        # count kept elsewhere that may differ from it for the same callers.
        figures["waiting"] = {**figures["waiting"], "kcc": line["waiting"]}
    # Callers who gave up waiting: their numbers only for roles that call citizens back.
    user = current_user(request)
    for stay in figures.get("abandoned", {}).get("callers", []):
        stay["caller"] = mask_number(stay["caller"], user)
    # The status line: the parts of this process that are down right now.
    health = request.app.get(HEALTH)
    figures["down"] = health.down_now() if health is not None else []
    return figures


async def board_page(request: web.Request) -> web.Response:
    require_role(request, "supervisor", "lead")
    return render(request, "board.html", figures=await _board(request))


async def board_json(request: web.Request) -> web.Response:
    require_role(request, "supervisor", "lead")
    return web.json_response(await _board(request))
