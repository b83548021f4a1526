"""The web's own screens and their rendering: sign-in, language, the admin's users.

Each feature's screens are in its own ``pages.py`` (callbacks: the team inbox;
announcements: the operator; calls: the KCC screen and the board) and render through
``render`` here. Forms post back to their handlers (with the session's CSRF token, checked
by the middleware) and redirect (post/redirect/get), so a reload never repeats an action.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from sqlalchemy import select

from cti.audit import audit
from cti.store.models import User
from cti.users.service import (
    ROLES,
    UserError,
    create_user,
    is_locked,
    issue_token,
    set_password,
    verify_password,
)
from cti.web import auth
from cti.web.context import SERVICES
from cti.web.i18n import LANGUAGES, client_texts, translator
from cti.web.jsonapi import json_error

HERE = Path(__file__).parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)

SCREENS: dict[str, list[tuple[str, str]]] = {
    "agent": [("/kcc", "kcc screen")],
    "member": [("/team", "team screen")],
    "lead": [("/team", "team screen"), ("/board", "board screen")],
    "operator": [("/operator", "operator screen")],
    "supervisor": [("/board", "board screen"), ("/team", "team screen")],
    "admin": [
        ("/admin", "admin screen"),
        ("/kcc", "kcc screen"),
        ("/team", "team screen"),
        ("/operator", "operator screen"),
        ("/board", "board screen"),
    ],
}


def setup(app: web.Application) -> None:
    app.middlewares.append(error_pages)
    app.router.add_static("/static", HERE / "static", name="static")
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/language", language)
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/users", user_create)
    app.router.add_post("/admin/users/{id:\\d+}", user_update)
    app.router.add_post("/admin/users/{id:\\d+}/token", user_token)


def lang_of(request: web.Request) -> str:
    language = str(auth.session_of(request).get("l", "nl"))
    return language if language in LANGUAGES else "nl"


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    language = lang_of(request)
    user = request.get(auth.USER)
    services = request.app[SERVICES]
    html = TEMPLATES.get_template(template).render(
        user=user,
        screens=SCREENS.get(user.role, []) if user else [],
        path=request.path,
        t=translator(language),
        lang=language,
        csrf=auth.csrf_token(request),
        exchange=services.config.exchange.name,
        message=request.query.get("msg", ""),
        error=request.query.get("err", ""),
        texts_json=json.dumps(client_texts(language)),
        local=lambda dt: _local(services.config.exchange.timezone, dt),
        **context,
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _local(tz: str, moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(tz)).strftime("%d-%m-%Y %H:%M")


def back(path: str, **query: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode(query)}" if query else path)


@web.middleware
async def error_pages(request: web.Request, handler: Any) -> web.StreamResponse:
    """403/404 on a page as a page (the API keeps its JSON errors)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status in (403, 404) and not auth.wants_json(request):
            key = "forbidden" if exc.status == 403 else "not found"
            detail = ""
            if exc.content_type == "application/json" and exc.text:
                detail = str(json.loads(exc.text).get("error", ""))
            return render(request, "error.html", status=exc.status, title=key, detail=detail)
        plain = exc.content_type != "application/json"
        if exc.status >= 400 and plain and auth.wants_json(request):
            # aiohttp's own answers (no such path, wrong method) are plain text; an API
            # client gets the same JSON shape as from our handlers.
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return web.json_response(
                {"error": f"{exc.reason}: {request.method} {request.path}"},
                status=exc.status,
                headers=headers,
            )
        raise
    except BadHttpMessage as exc:
        # A body aiohttp cannot parse (a multipart part with a broken header): the
        # client's fault, a 400 with the reason, never a 500.
        if not auth.wants_json(request):
            raise web.HTTPBadRequest(text=f"malformed request: {exc.message}") from None
        return web.json_response({"error": f"malformed request: {exc.message}"}, status=400)


async def home(request: web.Request) -> web.Response:
    user = auth.current_user(request)
    raise web.HTTPFound(SCREENS.get(user.role, [("/login", "")])[0][0])


def _safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another host.
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def login_form(request: web.Request) -> web.Response:
    if request.get(auth.USER) is not None:
        raise web.HTTPFound("/")
    return render(request, "login.html", next=_safe_next(request.query.get("next", "/")))


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    async with request.app[SERVICES].sessions() as session:
        user = await verify_password(session, name, password)
        await session.commit()
    if user is None:
        raise back("/login", err="wrong login", next=target)
    auth.sign_in(request, user)
    raise web.HTTPSeeOther(target)


async def logout(request: web.Request) -> web.Response:
    auth.sign_out(request)
    raise web.HTTPSeeOther("/login")


async def language(request: web.Request) -> web.Response:
    form = await request.post()
    chosen = str(form.get("lang", "nl"))
    if chosen not in LANGUAGES:
        chosen = "nl"
    auth.session_of(request)["l"] = chosen
    auth.mark_session_changed(request)
    user = request.get(auth.USER)
    if user is not None:
        async with request.app[SERVICES].sessions() as session:
            row = await session.get(User, user.id)
            if row is not None:
                row.language = chosen
                await session.commit()
    raise web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))


async def admin_page(request: web.Request) -> web.Response:
    auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        users = list((await session.execute(select(User).order_by(User.name))).scalars())
    return render(
        request,
        "admin.html",
        users=users,
        roles=ROLES,
        teams=request.app[SERVICES].config.teams,
        locked={u.id: is_locked(u) for u in users},
        token=request.query.get("token", ""),
    )


def _team_field(request: web.Request, value: str) -> str:
    if value and value not in {t.id for t in request.app[SERVICES].config.teams}:
        raise back("/admin", err=f"unknown team {value}")
    return value


async def user_create(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    form = await request.post()
    name = str(form.get("name", "")).strip()
    async with request.app[SERVICES].sessions() as session:
        try:
            user = await create_user(
                session,
                name,
                str(form.get("password", "")),
                str(form.get("role", "")),
                _team_field(request, str(form.get("team", ""))),
                str(form.get("extension", "")).strip(),
            )
        except UserError as exc:
            raise back("/admin", err=str(exc)) from None
        audit(
            session,
            actor=admin.name,
            action="create",
            object_type="user",
            object_id=user.id,
            detail=f"role={user.role} team={user.team_id}",
        )
        await session.commit()
    raise back("/admin", msg="saved")


async def user_update(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    form = await request.post()
    async with request.app[SERVICES].sessions() as session:
        user = await session.get(User, int(request.match_info["id"]))
        if user is None:
            raise json_error("no such user", 404)
        role = str(form.get("role", user.role))
        if role not in ROLES:
            raise back("/admin", err="unknown role")
        user.role = role
        user.team_id = _team_field(request, str(form.get("team", user.team_id)))
        user.extension = str(form.get("extension", user.extension)).strip()
        user.active = str(form.get("active", "1")) == "1"
        if form.get("unlock"):
            user.locked_until = None
            user.failed_logins = 0
        password = str(form.get("password", ""))
        if password:
            try:
                await set_password(session, user, password)
            except UserError as exc:
                raise back("/admin", err=str(exc)) from None
        audit(
            session,
            actor=admin.name,
            action="update",
            object_type="user",
            object_id=user.id,
            detail=f"role={user.role} team={user.team_id} active={user.active}",
        )
        await session.commit()
    raise back("/admin", msg="saved")


async def user_token(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        user = await session.get(User, int(request.match_info["id"]))
        if user is None:
            raise json_error("no such user", 404)
        token = await issue_token(session, user)
        audit(session, actor=admin.name, action="token", object_type="user", object_id=user.id)
        await session.commit()
    # Shown once on the next page; the page is private (no-store) and only to the admin.
    return render(request, "token.html", token=token, name=user.name)
