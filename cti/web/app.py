"""The HTTP side of `bereik serve`: health, metrics, and (by the CTI plugins) the API and UI."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from cti.services import Services
from cti.web import auth
from cti.web.context import SERVICES

# Each CTI plugin adds its routes through one of these (see cti/*/http.py).
Plugin = Callable[[web.Application], None]


def create_app(services: Services, plugins: list[Plugin] | None = None) -> web.Application:
    app = web.Application(client_max_size=20 * 1024 * 1024)
    app[SERVICES] = services
    # Deny by default: every route but /healthz, /metrics, /login and /static/* needs a
    # signed-in user.
    auth.setup(app, services.instance_dir / "web-session.key")
    if services.config.tls.https:
        app.on_response_prepare.append(_strict_transport_security)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for plugin in plugins or []:
        plugin(app)
    return app


async def _strict_transport_security(request: web.Request, response: web.StreamResponse) -> None:
    """HSTS on every answer: a browser that saw it once never falls back to plain HTTP."""
    seconds = request.app[SERVICES].config.tls.hsts_seconds
    response.headers["Strict-Transport-Security"] = f"max-age={seconds}"


async def healthz(request: web.Request) -> web.Response:
    """Up, and able to reach its database; AMI state is reported but does not fail it."""
    services = request.app[SERVICES]
    try:
        async with services.sessions() as session:
            await session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    ami = "connected" if services.ami is not None and services.ami.connected else "disconnected"
    status = 200 if database == "ok" else 503
    return web.json_response(
        {"status": "ok" if status == 200 else "degraded", "database": database, "ami": ami},
        status=status,
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
