"""The quality recordings screen (/quality): what a team's lead (their team's) or a
supervisor (every team's) may hear, newest first, each with a player. The audio is loaded
only when play is pressed (``preload="none"``) through /api/recordings/{id}, where every
play is audited; opening the list is audited too."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from cti.voice import quality
from cti.web.auth import mask_number, require_role
from cti.web.context import SERVICES
from cti.web.pages import render


def setup(app: web.Application) -> None:
    app.router.add_get("/quality", quality_page)


async def quality_page(request: web.Request) -> web.Response:
    user = require_role(request, "lead", "supervisor")
    services = request.app[SERVICES]
    found = await quality.listed(services, user)
    zone = ZoneInfo(services.config.exchange.timezone)
    names = {team.id: team.name for team in services.config.teams} | {"kcc": "KCC"}
    rows = [
        {
            "id": item.id,
            "team": names.get(item.team, item.team),
            "caller": mask_number(item.caller, user),
            "started": item.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if item.started_at
            else "",
            "seconds": round(item.seconds),
        }
        for item in found
    ]
    return render(request, "quality.html", recordings=rows)
