"""The admin's nodes screen: each Asterisk node's state behind Kamailio, drained and
undrained with a button (through ``cti.nodes.service.set_state``, as `bereik node` does)."""

from __future__ import annotations

from aiohttp import web

from cti.nodes import service
from cti.web.auth import require_role
from cti.web.context import SERVICES
from cti.web.pages import back, render
from dialplan.config import ConfigError
from dialplan.kamailio import KamailioError


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/nodes", nodes_page)
    for action in service.ACTIONS:
        app.router.add_post(f"/admin/nodes/{{name}}/{action}", node_change)


async def nodes_page(request: web.Request) -> web.Response:
    require_role(request, "admin")
    config = request.app[SERVICES].config
    problem = ""
    try:
        states = await service.listing(config)
    except KamailioError as exc:
        # The nodes are still listed (from the configuration), their state unknown.
        states = []
        problem = str(exc)
    return render(
        request,
        "nodes.html",
        states=states,
        configured=[node.name for node in config.nodes],
        problem=problem,
    )


async def node_change(request: web.Request) -> web.Response:
    user = require_role(request, "admin")
    name, action = request.match_info["name"], request.path.rsplit("/", 1)[1]
    try:
        await service.set_state(request.app[SERVICES], name, action, user.name)
    except (ConfigError, KamailioError) as exc:
        raise back("/admin/nodes", err=str(exc)) from None
    raise back("/admin/nodes", msg=f"node {action}ed msg")
