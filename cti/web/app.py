"""The HTTP side of `bereik serve`: health, metrics, and (by the CTI plugins) the API and UI."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from cti.health import HEALTH, Health
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
    app.on_response_prepare.append(_security_headers)
    if services.config.tls.https:
        app.on_response_prepare.append(_strict_transport_security)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for plugin in plugins or []:
        plugin(app)
    return app


# Scripts and styles only from our own /static files (no inline script, no handler
# attribute: an injected one does not run), no framing (clickjacking), no plug-ins, forms
# post only here. connect-src 'self' covers fetch and the /events streams.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "X-Content-Type-Options": "nosniff",
    # Screen addresses carry hopper ids and search terms: never sent to another site.
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: pages, API, static files, errors, /metrics."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def _strict_transport_security(request: web.Request, response: web.StreamResponse) -> None:
    """HSTS on every answer: a browser that saw it once never falls back to plain HTTP."""
    seconds = request.app[SERVICES].config.tls.hsts_seconds
    response.headers["Strict-Transport-Security"] = f"max-age={seconds}"


async def healthz(request: web.Request) -> web.Response:
    """Each part of this process (cti/health.py); 503 naming the parts that are down."""
    health = request.app.get(HEALTH) or Health(request.app[SERVICES])
    report = await health.check()
    return web.json_response(report.as_dict(), status=200 if report.ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
