"""The waiting line's API: an agent's own state (the status switch on the KCC screen), and
the line's figures for the board and the screens.

``POST /api/agent/state`` goes through the same ``change_state`` as the phone's feature
codes: stored, audited, pushed to Asterisk. An agent changes their own extension; a
supervisor may name another (to sign out someone who went home signed in).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cti.calls.pages import BOARD_PARTS
from cti.queue import abandoned, service
from cti.queue.figures import forecast, queue_figures
from cti.web import auth
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object


def setup(app: web.Application) -> None:
    if app[SERVICES].config.kcc.mode == "queue":
        app[BOARD_PARTS]["queue"] = queue_figures_json
        app[BOARD_PARTS]["abandoned"] = abandoned.board_part
    app.router.add_get("/api/agent/state", agent_state)
    app.router.add_post("/api/agent/state", change_agent_state)
    app.router.add_get("/api/queue", queue_json)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds_since(moment: datetime | None, now: datetime) -> int | None:
    return max(int((now - moment).total_seconds()), 0) if moment else None


async def agent_state(request: web.Request) -> web.Response:
    user = auth.require_role(request, "agent")
    services = request.app[SERVICES]
    if not service.queue_enabled(services):
        raise json_error("het KCC werkt niet met een wachtrij", 404)
    views = {v.extension: v for v in await service.agent_views(services)}
    view = views.get(user.extension)
    if view is None:
        raise json_error(f"toestel {user.extension!r} is geen KCC-toestel", 404)
    return web.json_response(
        {
            "extension": view.extension,
            "state": view.state,
            "reason": view.reason,
            "since": _iso(view.since),
            "wrapup_until": _iso(view.wrapup_until),
            "reasons": service.pause_reasons(services),
        }
    )


async def change_agent_state(request: web.Request) -> web.Response:
    user = auth.require_role(request, "agent", "supervisor")
    services = request.app[SERVICES]
    body = await json_object(request)
    extension = str(body.get("extension") or user.extension)
    if extension != user.extension and user.role != "supervisor":
        raise auth.forbidden("an agent changes only their own state")
    try:
        state = await service.change_state(
            services,
            extension,
            str(body.get("action", "")),
            actor=user.name,
            reason=str(body.get("reason", "")),
        )
    except service.QueueError as exc:
        raise json_error(str(exc)) from None
    return web.json_response({"extension": extension, "state": state})


async def queue_figures_json(services: Any) -> dict[str, Any]:
    """What the board's queue row and /api/queue show: now, today, and the forecast."""
    config = services.config
    now = datetime.now(UTC)
    async with services.sessions() as session:
        figures = await queue_figures(
            session, service.KCC_QUEUE, now, config.exchange.timezone, config.queue
        )
    views = await service.agent_views(services, now)
    waiting, longest = await service.waiting_now(services, now)
    by_state = {state: 0 for state in service.STATES}
    for view in views:
        by_state[view.state] += 1
    labels = service.pause_reasons(services)
    return {
        "queue": service.KCC_QUEUE,
        "waiting": waiting,
        "longest_wait_seconds": round(longest, 1),
        "agents_by_state": by_state,
        # Per agent the state, the pause reason as the TOML names it, and how long they
        # have been in that state (a supervisor asks "how long is she on her break?").
        "agents": [
            {
                "extension": v.extension,
                "name": v.name,
                "state": v.state,
                "reason": v.reason,
                "reason_label": labels.get(v.reason, v.reason),
                "since": _iso(v.since),
                "seconds": _seconds_since(v.since, now),
            }
            for v in views
        ],
        "today": asdict(figures),
        "service_level_seconds": config.queue.service_level_seconds,
        "agents_needed": forecast(figures, config.queue),
    }


async def queue_json(request: web.Request) -> web.Response:
    auth.require_role(request, "agent", "supervisor", "lead")
    services = request.app[SERVICES]
    if not service.queue_enabled(services):
        raise json_error("het KCC werkt niet met een wachtrij", 404)
    return web.json_response(await queue_figures_json(services))
