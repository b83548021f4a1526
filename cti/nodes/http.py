"""The nodes API (its routes added by `bereik serve`), for the admin only.

    GET  /api/nodes                  every node's state as Kamailio sees it
    POST /api/nodes/{name}/drain     no new calls or originates to the node
    POST /api/nodes/{name}/undrain   the node takes new calls again

Both changes go through ``cti.nodes.service.set_state`` (as `bereik node` does) and are
audited with the user's name. Errors are JSON {"error": "..."}: 404 for an unknown node,
502 when Kamailio does not answer or refuses.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from cti.nodes import service
from cti.web.auth import require_role
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from dialplan.config import ConfigError
from dialplan.kamailio import KamailioError


def setup(app: web.Application) -> None:
    app.router.add_get("/api/nodes", listing)
    for action in service.ACTIONS:
        app.router.add_post(f"/api/nodes/{{name}}/{action}", change)


async def listing(request: web.Request) -> web.Response:
    require_role(request, "admin")
    try:
        states = await service.listing(request.app[SERVICES].config)
    except KamailioError as exc:
        raise json_error(str(exc), 502) from None
    return web.json_response([asdict(state) for state in states])


async def change(request: web.Request) -> web.Response:
    user = require_role(request, "admin")
    name, action = request.match_info["name"], request.path.rsplit("/", 1)[1]
    try:
        await service.set_state(request.app[SERVICES], name, action, user.name)
    except ConfigError as exc:
        raise json_error(str(exc), 404) from None
    except KamailioError as exc:
        raise json_error(str(exc), 502) from None
    return web.json_response({"name": name, "action": action})
