"""Access control for every web route: deny by default.

A request is let through when it carries a signed-in session cookie or an API token
(`Authorization: Bearer <token>`); only /healthz, /readyz, /metrics, /login and
/static/* are open. Handlers then narrow it down with `require_role` and `require_team_access`.

The session is a small HMAC-signed cookie (several `bereik serve` processes can share it as
long as they share the key file). It holds the user id, the session version it was signed
in with, the CSRF token and the language. The user row is re-read on every request, and
the session only counts while its version equals the row's `session_version`: logout, a
new password and deactivation raise it, which ends every cookie of that user at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from cti import privacy
from cti.store.models import User
from cti.users import second_factor
from cti.users.service import user_by_token
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from dialplan.config import KCC_ID

log = logging.getLogger(__name__)

COOKIE = "bereik_session"
SESSION_SECONDS = 12 * 3600  # one long shift; sign in again the next day
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/login", "/login/code")
OPEN_PREFIXES = ("/static/",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# An admin or supervisor without a second factor reaches only its set-up (and can sign
# out or switch language) until it is done.
SECOND_FACTOR_SETUP = "/account/second-factor"
BEFORE_SECOND_FACTOR = ("/logout", "/language")

# Roles that work across all teams' hoppers: the KCC creates them for any team, the
# supervisor and the admin oversee all. Members and leads see their own team only.
ALL_TEAMS_ROLES = ("agent", "supervisor", "admin")

SESSION_KEY = web.AppKey("session_key", bytes)
USER = web.RequestKey("bereik_user", User)  # the signed-in user
SESSION = web.RequestKey("bereik_session", dict)  # the session dict (saved if changed)
VIA_TOKEN = web.RequestKey("bereik_via_token", bool)
DIRTY = web.RequestKey("bereik_session_dirty", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- errors as JSON -------------------------------------------------------------------------


def unauthorized(message: str = "sign in required") -> web.HTTPException:
    return json_error(message, 401)


def forbidden(message: str = "not allowed for your role") -> web.HTTPException:
    return json_error(message, 403)


# --- the contract used by every feature's handlers ----------------------------------------


def current_user(request: web.Request) -> User:
    """The signed-in user (session or API token); 401 if there is none."""
    user = request.get(USER)
    if user is None:
        raise unauthorized()
    return user  # type: ignore[no-any-return]


def require_role(request: web.Request, *roles: str) -> User:
    """The signed-in user if their role is one of `roles` (admin always passes); else 403."""
    user = current_user(request)
    if user.role not in roles and user.role != "admin":
        raise forbidden(f"this needs the role {' or '.join(roles)}")
    return user


def require_team_access(user: User, team_id: str) -> None:
    """403 unless the user may see and handle this team's hoppers."""
    if user.role in ALL_TEAMS_ROLES:
        return
    if user.role in ("member", "lead") and user.team_id and user.team_id == team_id:
        return
    raise forbidden("this belongs to another team")


def require_callback_access(user: User, hold_id: int, hold_at_phone: int | None) -> None:
    """403 unless the user may hear a virtual hold's question that no hopper carries: the
    agent whose phone its callback rings or is connected to (`hold_at_phone`: the live
    call board's callback at the user's extension), the KCC's lead, and the all-teams
    roles that lead the KCC (supervisor, admin), as for the KCC's hoppers. Not every
    agent: the question is the citizen's, and only the agent calling them back needs it."""
    if user.role in ("supervisor", "admin"):
        return
    if user.role == "lead" and user.team_id == KCC_ID:
        return
    if user.role == "agent" and hold_at_phone is not None and hold_at_phone == hold_id:
        return
    raise forbidden("only the agent this callback rings may hear its question")


def may_handle(user: User, team_id: str) -> bool:
    """Whether the user may claim and close this team's hoppers: its own members and lead
    (the KCC's own hoppers: its agents), and the admin. Supervisors and KCC agents see
    every team's hoppers but do not take or close another team's work. The one rule for
    the screens and the API."""
    if user.role == "admin":
        return True
    if team_id == KCC_ID:
        return user.role == "agent"
    return user.role in ("member", "lead") and bool(user.team_id) and user.team_id == team_id


def require_own_team(user: User, team_id: str) -> None:
    """403 unless `may_handle`."""
    if not may_handle(user, team_id):
        raise forbidden("only the hopper's own team may claim or close it")


def can_see_numbers(user: User) -> bool:
    """Whether lists show full phone numbers: only to those who call citizens back."""
    return user.role in ("agent", "member", "lead")


def mask_number(number: str, user: User | None = None) -> str:
    """`0612345678` -> `06******78` for roles that do not need the number (GDPR)."""
    if user is not None and can_see_numbers(user):
        return number
    return privacy.mask_number(number)


# --- the session cookie ---------------------------------------------------------------------


def setup(app: web.Application, key_file: Path | None) -> None:
    """Load (or create) the signing key and install the middleware."""
    app[SESSION_KEY] = _load_key(key_file)
    app.middlewares.append(auth_middleware)


def _load_key(key_file: Path | None) -> bytes:
    if key_file is not None:
        try:
            if key_file.exists():
                key = bytes.fromhex(key_file.read_text().strip())
                if len(key) >= 32:
                    return key
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_bytes(32)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key.hex())
            return key
        except (OSError, ValueError) as exc:
            log.warning("session key %s unusable (%s); sessions end on restart", key_file, exc)
    return secrets.token_bytes(32)


def _sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def encode_session(key: bytes, data: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
    return payload.decode() + "." + _sign(key, payload)


def decode_session(key: bytes, cookie: str, now: float | None = None) -> dict[str, Any] | None:
    payload, _, signature = cookie.partition(".")
    if not payload or not hmac.compare_digest(_sign(key, payload.encode()), signature):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if float(data.get("t", 0)) + SESSION_SECONDS < (now or time.time()):
        return None
    return data


def new_session(language: str = "nl") -> dict[str, Any]:
    return {"u": None, "c": secrets.token_urlsafe(24), "l": language, "t": time.time()}


def session_of(request: web.Request) -> dict[str, Any]:
    session = request.get(SESSION)
    if session is None:
        session = new_session()
        request[SESSION] = session
        request[DIRTY] = True
    return session  # type: ignore[no-any-return]


def csrf_token(request: web.Request) -> str:
    return str(session_of(request)["c"])


def mark_session_changed(request: web.Request) -> None:
    request[DIRTY] = True


def sign_in(request: web.Request, user: User) -> None:
    """A fresh session (new CSRF token: no fixation) for this user."""
    language = user.language or session_of(request).get("l", "nl")
    session = new_session(language)
    session["u"] = user.id
    session["v"] = user.session_version or 0
    request[SESSION] = session
    request[USER] = user
    mark_session_changed(request)


def sign_out(request: web.Request) -> None:
    language = session_of(request).get("l", "nl")
    request[SESSION] = new_session(language)
    request.pop(USER, None)
    mark_session_changed(request)


def from_trusted_proxy(request: web.Request) -> bool:
    """Whether the direct peer is a configured reverse proxy (`server.trusted_proxies`)."""
    proxies = request.app[SERVICES].config.server.trusted_proxies
    if not proxies or not request.remote:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(p, strict=False) for p in proxies)


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or what a trusted proxy says in X-Forwarded-For."""
    if from_trusted_proxy(request):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.remote or "?"


def _secure(request: web.Request) -> bool:
    if request.secure:
        return True
    if from_trusted_proxy(request) and request.headers.get("X-Forwarded-Proto", "") == "https":
        return True

    return request.app[SERVICES].config.server.public_url.startswith("https://")


def _save(request: web.Request, response: web.StreamResponse) -> None:
    if not request.get(DIRTY) or response.prepared:
        return
    value = encode_session(request.app[SESSION_KEY], request[SESSION])
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


# --- the middleware -------------------------------------------------------------------------


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def wants_json(request: web.Request) -> bool:
    if request.path.startswith(("/api/", "/events")):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


async def _load_user(request: web.Request) -> None:

    sessions = request.app[SERVICES].sessions
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        async with sessions() as db:
            user = await user_by_token(db, header[7:].strip())
        if user is None:
            raise unauthorized("invalid API token")
        request[USER] = user
        request[VIA_TOKEN] = True
        return
    raw = request.cookies.get(COOKIE)
    data = decode_session(request.app[SESSION_KEY], raw) if raw else None
    if data is None:
        return
    request[SESSION] = data
    user_id = data.get("u")
    if isinstance(user_id, int):
        async with sessions() as db:
            user = await db.get(User, user_id)
        if user is not None and session_valid(user, data):
            request[USER] = user


def session_valid(user: User | None, data: dict[str, Any]) -> bool:
    """Whether a session cookie still signs this user in (active, not revoked)."""
    return (
        user is not None
        and user.active
        and user.id == data.get("u")
        and data.get("v") == (user.session_version or 0)
    )


async def still_signed_in(request: web.Request) -> bool:
    """Re-read the user behind this request: for long-lived answers (/events)."""
    sessions = request.app[SERVICES].sessions
    async with sessions() as db:
        if request.get(VIA_TOKEN):
            header = request.headers.get("Authorization", "")
            return await user_by_token(db, header[7:].strip()) is not None
        data = request.get(SESSION) or {}
        user_id = data.get("u")
        user = await db.get(User, user_id) if isinstance(user_id, int) else None
    return session_valid(user, data)


async def _check_csrf(request: web.Request) -> None:
    """Non-GET requests from a browser session must carry the session's CSRF token.

    The sign-in form carries its own one-time token instead (cti.users.guard.LoginTokens),
    checked by the sign-in handler.
    """
    if request.method in SAFE_METHODS or request.get(VIA_TOKEN) or request.path == "/login":
        return
    expected = str(request.get(SESSION, {}).get("c", ""))
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()  # cached by aiohttp: the handler can read it again
        value = form.get(CSRF_FIELD, "")
        given = value if isinstance(value, str) else ""
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise forbidden("missing or invalid CSRF token; reload the page and try again")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        await _load_user(request)
        if not is_open(request.path) and request.get(USER) is None:
            if wants_json(request):
                raise unauthorized()
            raise web.HTTPFound(f"/login?next={_quote(request.path_qs)}")
        _second_factor_first(request)
        await _check_csrf(request)
        response = await handler(request)
    except web.HTTPException as exc:
        _no_store(request, exc)
        _save(request, exc)
        raise
    _no_store(request, response)
    _save(request, response)
    return response


def _second_factor_first(request: web.Request) -> None:
    user = request.get(USER)
    if (
        user is None
        or request.get(VIA_TOKEN)
        or not second_factor.required(user)
        or second_factor.enrolled(user)
        or is_open(request.path)
        or request.path.startswith(SECOND_FACTOR_SETUP)
        or request.path in BEFORE_SECOND_FACTOR
    ):
        return
    if wants_json(request):
        raise forbidden(f"set up your second factor first: {SECOND_FACTOR_SETUP}")
    raise web.HTTPFound(SECOND_FACTOR_SETUP)


def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Pages and API answers may carry personal data: no browser or proxy keeps a copy."""
    if response.prepared or request.path.startswith(OPEN_PREFIXES):
        return
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"


def _quote(path: str) -> str:
    return quote(path, safe="")
