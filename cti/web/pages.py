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
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from sqlalchemy import select

from cti.audit import audit
from cti.store.models import User
from cti.users.guard import AttemptLimiter, LoginTokens
from cti.users.service import (
    ROLES,
    LoginBusy,
    UserError,
    check_extension,
    checks_saturated,
    create_user,
    is_locked,
    issue_token,
    revoke_sessions,
    revoke_token,
    set_password,
    verify_password,
)
from cti.web import auth
from cti.web.context import SERVICES
from cti.web.i18n import LANGUAGES, client_texts, translator
from cti.web.jsonapi import json_error

HERE = Path(__file__).parent
LOGIN_TOKENS = web.AppKey("login_tokens", LoginTokens)
LIMITER = web.AppKey("login_limiter", AttemptLimiter)
LOGIN_TOKEN_FIELD = "login_token"  # the sign-in form's one-time token (not the session's)
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)

SCREENS: dict[str, list[tuple[str, str]]] = {
    "agent": [("/kcc", "kcc screen")],
    "member": [("/team", "team screen")],
    "lead": [("/team", "team screen"), ("/board", "board screen"), ("/reports", "reports screen")],
    "operator": [("/operator", "operator screen")],
    "supervisor": [
        ("/board", "board screen"),
        ("/team", "team screen"),
        ("/reports", "reports screen"),
    ],
    "admin": [
        ("/admin", "admin screen"),
        ("/admin/nodes", "nodes screen"),
        ("/kcc", "kcc screen"),
        ("/team", "team screen"),
        ("/operator", "operator screen"),
        ("/board", "board screen"),
        ("/reports", "reports screen"),
    ],
}


def setup(app: web.Application) -> None:
    app.middlewares.append(error_pages)
    app[LOGIN_TOKENS] = LoginTokens(app[auth.SESSION_KEY])
    app[LIMITER] = AttemptLimiter(app[SERVICES].config.server.login_attempts_per_minute)
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
    app.router.add_post("/admin/users/{id:\\d+}/token/revoke", user_token_revoke)


def lang_of(request: web.Request) -> str:
    language = str(auth.session_of(request).get("l", "nl"))
    return language if language in LANGUAGES else "nl"


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    language = lang_of(request)
    user = request.get(auth.USER)
    services = request.app[SERVICES]
    screens = SCREENS.get(user.role, []) if user else []
    # The nav marks the longest link this page is under (/admin/nodes, not /admin too).
    under = [href for href, _ in screens if request.path.startswith(href)]
    html = TEMPLATES.get_template(template).render(
        user=user,
        screens=screens,
        current=max(under, key=len, default=""),
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
    """A redirect target on this site only: an absolute path, never another host.

    Browsers ignore tabs and newlines in URLs and read a backslash as a slash, so
    `/<TAB>/evil.example` and `/\\evil.example` would leave the site; such a target, any
    control character or space, and anything with a scheme or host fall back to "/".
    """
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)
        or "\\" in target
    ):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


async def _too_many(request: web.Request, first_refusal: bool) -> web.HTTPTooManyRequests:
    """429 for an address over its limit; the first refusal of a run is audited, the
    rest are not (a flood must not grow the audit log one row per attempt)."""
    if first_refusal:
        async with request.app[SERVICES].sessions() as session:
            audit(
                session,
                actor="?",
                action="login_throttled",
                object_type="address",
                object_id=auth.client_address(request)[:64],
            )
            await session.commit()
    return web.HTTPTooManyRequests(
        text="too many sign-in attempts; wait a minute",
        headers={"Retry-After": str(request.app[LIMITER].retry_after())},
    )


async def login_form(request: web.Request) -> web.Response:
    if request.get(auth.USER) is not None:
        raise web.HTTPFound("/")
    throttled, first_refusal = request.app[LIMITER].throttled(auth.client_address(request))
    if throttled:
        raise await _too_many(request, first_refusal)  # no form for an address flooding
    token = request.app[LOGIN_TOKENS].issue(auth.csrf_token(request))
    next_ = _safe_next(request.query.get("next", "/"))
    return render(request, "login.html", next=next_, login_token=token)


def _busy() -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text="too many sign-ins at once; try again in a moment", headers={"Retry-After": "2"}
    )


async def login(request: web.Request) -> web.Response:
    """Sign in. The cheap refusals come first (checks saturated, address over its limit),
    before the form, the database or a password check, so a flood costs little."""
    if checks_saturated():
        raise _busy()
    address = auth.client_address(request)
    allowed, first_refusal = request.app[LIMITER].allow(address)
    if not allowed:
        raise await _too_many(request, first_refusal)
    form = await request.post()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    given = str(form.get(LOGIN_TOKEN_FIELD, ""))
    if not request.app[LOGIN_TOKENS].redeem(auth.csrf_token(request), given):
        # Expired, used before, or from another browser: a fresh form, nothing counted.
        raise back("/login", err="form expired", next=target)
    try:
        user = await verify_password(request.app[SERVICES].sessions, name, password)
    except LoginBusy:
        raise _busy() from None
    if user is None:
        raise back("/login", err="wrong login", next=target)
    auth.sign_in(request, user)
    raise web.HTTPSeeOther(target)


async def logout(request: web.Request) -> web.Response:
    user = request.get(auth.USER)
    if user is not None:
        # Server-side: the old cookie (a copy of it anywhere) no longer signs in.
        async with request.app[SERVICES].sessions() as session:
            row = await session.get(User, user.id)
            if row is not None:
                revoke_sessions(row)
                audit(
                    session, actor=row.name, action="logout", object_type="user", object_id=row.id
                )
                await session.commit()
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


# --- admin: users -------------------------------------------------------------------------


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
        user = await _user_of(request, session)
        role = str(form.get("role", user.role))
        if role not in ROLES:
            raise back("/admin", err="unknown role")
        try:
            extension = check_extension(str(form.get("extension", user.extension)).strip())
        except UserError as exc:
            raise back("/admin", err=str(exc)) from None
        user.role = role
        user.team_id = _team_field(request, str(form.get("team", user.team_id)))
        user.extension = extension
        active = str(form.get("active", "1")) == "1"
        if user.active and not active:
            revoke_sessions(user)  # a deactivated user's open screens end at once
        user.active = active
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


async def _user_of(request: web.Request, session: Any) -> User:
    """The account named by the URL's id; 404 if there is none."""
    user: User | None = await session.get(User, int(request.match_info["id"]))
    if user is None:
        raise json_error("no such user", 404)
    return user


async def user_token(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        user = await _user_of(request, session)
        token = await issue_token(session, user)
        audit(session, actor=admin.name, action="token", object_type="user", object_id=user.id)
        await session.commit()
    # Shown once on the next page; the page is private (no-store) and only to the admin.
    return render(request, "token.html", token=token, name=user.name)


async def user_token_revoke(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        user = await _user_of(request, session)
        revoke_token(user)
        audit(
            session, actor=admin.name, action="token_revoke", object_type="user", object_id=user.id
        )
        await session.commit()
    raise back("/admin", msg="saved")
