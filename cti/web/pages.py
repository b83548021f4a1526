"""The web's own screens and their rendering: sign-in (password, then the second factor
for admins and supervisors), sign-out, language.

Each feature's screens are in its own ``pages.py`` (callbacks: the team inbox;
announcements: the operator; calls: the KCC screen and the board; users: the admin's
accounts and the second factor's set-up) and render through ``render`` here. Forms post
back to their handlers (with the session's CSRF token, checked by the middleware) and
redirect (post/redirect/get), so a reload never repeats an action. A redirect's message
is a key of cti/web/i18n.py in the address, or this server's own text in the session.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from cti.audit import audit
from cti.store.models import User
from cti.users import backoff, second_factor
from cti.users.guard import AttemptLimiter, LoginTokens
from cti.users.service import (
    LoginBusy,
    SignInWaits,
    checks_saturated,
    count_miss,
    revoke_sessions,
    verify_password,
)
from cti.web import auth
from cti.web.context import SERVICES
from cti.web.i18n import LANGUAGES, client_texts, is_text, translator

HERE = Path(__file__).parent
LOGIN_TOKENS = web.AppKey("login_tokens", LoginTokens)
LIMITER = web.AppKey("login_limiter", AttemptLimiter)
SECRET_BOX = web.AppKey("second_factor_box", second_factor.SecretBox)
# Between the right password and the right code: the half-signed-in session lasts this long.
CODE_SECONDS = 5 * 60
FLASH = "f"  # the session's one-time message (a redirect's free text, never the URL's)
LOGIN_TOKEN_FIELD = "login_token"  # the sign-in form's one-time token (not the session's)
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)

SCREENS: dict[str, list[tuple[str, str]]] = {
    "agent": [("/kcc", "kcc screen")],
    "member": [("/team", "team screen")],
    "lead": [
        ("/team", "team screen"),
        ("/board", "board screen"),
        ("/reports", "reports screen"),
        ("/quality", "quality screen"),
    ],
    "operator": [("/operator", "operator screen")],
    "supervisor": [
        ("/board", "board screen"),
        ("/team", "team screen"),
        ("/reports", "reports screen"),
        ("/quality", "quality screen"),
    ],
    "admin": [
        ("/admin", "admin screen"),
        ("/admin/nodes", "nodes screen"),
        ("/kcc", "kcc screen"),
        ("/team", "team screen"),
        ("/operator", "operator screen"),
        ("/board", "board screen"),
        ("/reports", "reports screen"),
        ("/quality", "quality screen"),
    ],
}


def setup(app: web.Application) -> None:
    app.middlewares.append(error_pages)
    app[LOGIN_TOKENS] = LoginTokens(app[auth.SESSION_KEY])
    app[LIMITER] = AttemptLimiter(app[SERVICES].config.server.login_attempts_per_minute)
    app[SECRET_BOX] = second_factor.SecretBox.of_instance(app[SERVICES].instance_dir)
    app.router.add_static("/static", HERE / "static", name="static")
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/login/code", code_form)
    app.router.add_post("/login/code", code)
    app.router.add_post("/logout", logout)
    app.router.add_post("/language", language)


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
    message, error = _messages(request)
    html = TEMPLATES.get_template(template).render(
        user=user,
        screens=screens,
        current=max(under, key=len, default=""),
        path=request.path,
        t=translator(language),
        lang=language,
        csrf=auth.csrf_token(request),
        exchange=services.config.exchange.name,
        message=message,
        error=error,
        # JSON in a data element: "<" escaped, so no text can close the element.
        texts_json=json.dumps(client_texts(language)).replace("<", "\\u003c"),
        local=lambda dt: _local(services.config.exchange.timezone, dt),
        **context,
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _messages(request: web.Request) -> tuple[str, str]:
    """(message, error) to show: `?msg=`/`?err=` only when they name a known text (a link
    from elsewhere cannot put words on our page), else this server's own one-time flash."""
    message = request.query.get("msg", "")
    error = request.query.get("err", "")
    message, error = (message if is_text(message) else ""), (error if is_text(error) else "")
    session = request.get(auth.SESSION)
    flash = session.pop(FLASH, None) if isinstance(session, dict) else None
    if isinstance(flash, dict):
        auth.mark_session_changed(request)
        message = message or str(flash.get("msg", ""))
        error = error or str(flash.get("err", ""))
    return message, error


def _flash_free_text(request: web.Request, exc: web.HTTPMove) -> web.HTTPMove:
    """A redirect of ours whose `msg`/`err` is free text (a validation message with the
    value in it): the text moves into the signed session, the address keeps the rest."""
    location = exc.headers.get("Location", "")
    parts = urlsplit(location)
    if parts.scheme or parts.netloc or not parts.query:
        return exc
    query = parse_qsl(parts.query, keep_blank_values=True)
    free = {k: v for k, v in query if k in ("msg", "err") and not is_text(v)}
    if not free:
        return exc
    auth.session_of(request)[FLASH] = free
    auth.mark_session_changed(request)
    kept = [(k, v) for k, v in query if k not in free]
    target = parts.path + (f"?{urlencode(kept)}" if kept else "")
    return type(exc)(location=target)


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
    except web.HTTPMove as exc:
        raise _flash_free_text(request, exc) from None
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
    before the form, the database or a password check, so a flood costs little. An admin
    or supervisor with a second factor is asked the code next (`code`)."""
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
    services = request.app[SERVICES]
    try:
        user = await verify_password(
            services.sessions,
            name,
            password,
            address=address,
            on_wait=services.metrics.login_lockouts.inc,
        )
    except LoginBusy:
        raise _busy() from None
    except SignInWaits:
        raise back("/login", err="sign-in waits", next=target) from None
    if user is None:
        raise back("/login", err="wrong login", next=target)
    if second_factor.required(user) and second_factor.enrolled(user):
        # Half signed in: a fresh session (no fixation) that names whom the code is for.
        language = user.language or auth.session_of(request).get("l", "nl")
        session = auth.new_session(language)
        session["p"] = {"u": user.id, "v": user.session_version or 0, "t": time.time()}
        request[auth.SESSION] = session
        auth.mark_session_changed(request)
        raise back("/login/code", next=target)
    auth.sign_in(request, user)
    raise web.HTTPSeeOther(target)


async def _pending(request: web.Request) -> User | None:
    """The user whose password was right and whose code is asked, if still in time."""
    pending = auth.session_of(request).get("p")
    if not isinstance(pending, dict) or not isinstance(pending.get("u"), int):
        return None
    if time.time() - float(pending.get("t", 0)) > CODE_SECONDS:
        return None
    async with request.app[SERVICES].sessions() as session:
        user = await session.get(User, pending["u"])
    if user is None or not user.active or (user.session_version or 0) != pending.get("v"):
        return None
    return user


async def code_form(request: web.Request) -> web.Response:
    if request.get(auth.USER) is not None:
        raise web.HTTPFound("/")
    if await _pending(request) is None:
        raise back("/login", err="form expired")
    next_ = _safe_next(request.query.get("next", "/"))
    return render(request, "login_code.html", next=next_)


async def code(request: web.Request) -> web.Response:
    """The second factor: a TOTP code, or one of the user's recovery codes. Wrong codes
    are counted for (name, address) like wrong passwords, and limited per address."""
    address = auth.client_address(request)
    allowed, first_refusal = request.app[LIMITER].allow(address)
    if not allowed:
        raise await _too_many(request, first_refusal)
    form = await request.post()
    target = _safe_next(str(form.get("next", "/")))
    user = await _pending(request)
    if user is None:
        raise back("/login", err="form expired", next=target)
    services = request.app[SERVICES]
    now = datetime.now(UTC)
    if await backoff.blocked_until(services.sessions, user.name, address, now) is not None:
        raise back("/login/code", err="sign-in waits", next=target)
    given = str(form.get("code", "")).strip()
    kind = await second_factor.check(services.sessions, user.id, request.app[SECRET_BOX], given)
    if kind is None:
        await count_miss(
            services.sessions, user.name, address, now, services.metrics.login_lockouts.inc, "code"
        )
        raise back("/login/code", err="wrong code", next=target)
    await backoff.clear(services.sessions, user.name, address)
    async with services.sessions() as session:
        audit(
            session,
            actor=user.name,
            action="login_code" if kind == "totp" else "recovery_code_used",
            object_type="user",
            object_id=user.id,
        )
        await session.commit()
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
