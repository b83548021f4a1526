"""The server-rendered screens: sign-in, KCC, group inbox, announcements, board, users.

Forms post back to these handlers (with the session's CSRF token, checked by the
middleware) and redirect (post/redirect/get), so a reload never repeats an action. The
shared rules live in the feature services (hoppers, callbacks, announcements); these
handlers only check access, call them, write the audit row and render.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from sqlalchemy import func, select

from cti.audit import audit
from cti.store.models import Announcement, CallbackAttempt, Hopper, Presence, User
from cti.web import auth
from cti.web.app import SERVICES
from cti.web.i18n import LANGUAGES, client_texts, translator
from cti.web.jsonapi import json_error

HERE = Path(__file__).parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)

# Which screens each role has, in menu order; the first is the role's home.
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
    """WEB_PLUGIN entry point."""
    app.middlewares.append(error_pages)
    app.router.add_static("/static", HERE / "static", name="static")
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/language", language)
    app.router.add_get("/kcc", kcc_page)
    app.router.add_get("/team", team_page)
    app.router.add_get("/team/hoppers/{id:\\d+}", hopper_page)
    app.router.add_post("/team/hoppers/{id:\\d+}/claim", hopper_claim)
    app.router.add_post("/team/hoppers/{id:\\d+}/close", hopper_close)
    app.router.add_post("/team/presence", presence)
    app.router.add_get("/operator", operator_page)
    app.router.add_post("/operator/announcements", announcement_create)
    app.router.add_post("/operator/announcements/{id:\\d+}/end", announcement_end)
    app.router.add_get("/operator/announcements/{id:\\d+}/audio", announcement_audio)
    app.router.add_post("/operator/preview", announcement_preview)
    app.router.add_get("/operator/preview/{name}", preview_audio)
    app.router.add_get("/board", board_page)
    app.router.add_get("/api/board", board_json)
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/users", user_create)
    app.router.add_post("/admin/users/{id:\\d+}", user_update)
    app.router.add_post("/admin/users/{id:\\d+}/token", user_token)


# --- rendering --------------------------------------------------------------------------


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


# --- sign-in ------------------------------------------------------------------------------


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
    from cti.users.service import verify_password

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


# --- KCC -------------------------------------------------------------------------------


async def kcc_page(request: web.Request) -> web.Response:
    user = auth.require_role(request, "agent")
    config = request.app[SERVICES].config
    teams = {t.id: t for t in config.teams}
    routing = [
        {
            "category": category,
            "team": teams[team_id].name,
            "team_id": team_id,
            "number": teams[team_id].number,
        }
        for category, team_id in sorted(config.categories.items())
    ]
    return render(
        request, "kcc.html", routing=routing, teams=config.teams, extension=user.extension
    )


# --- team: the group inbox ----------------------------------------------------------------


def _inbox_team(request: web.Request, user: User) -> str:
    """The team whose inbox to show: the own team, or (for the all-teams roles) a choice."""
    config = request.app[SERVICES].config
    wanted = request.query.get("team", "")
    if user.role in ("member", "lead") and not wanted:
        return user.team_id
    if not wanted:
        return config.teams[0].id if config.teams else ""
    if wanted not in {t.id for t in config.teams}:
        raise json_error("unknown team", 404)
    auth.require_team_access(user, wanted)
    return wanted


async def team_page(request: web.Request) -> web.Response:
    user = auth.require_role(request, "member", "lead", "supervisor", "agent")
    services = request.app[SERVICES]
    team_id = _inbox_team(request, user)
    show_closed = request.query.get("closed") == "1"
    now = datetime.now(UTC)
    async with services.sessions() as session:
        query = select(Hopper).where(Hopper.team_id == team_id)
        if show_closed:
            query = query.where(Hopper.status == "closed").order_by(Hopper.closed_at.desc())
        else:
            # Overdue on top (oldest deadline first), then the rest by deadline.
            query = query.where(Hopper.status == "open").order_by(Hopper.deadline, Hopper.id)
        hoppers = list((await session.execute(query.limit(300))).scalars())
        for hopper in hoppers:
            audit(
                session,
                actor=user.name,
                action="view",
                object_type="hopper",
                object_id=hopper.id,
                detail="inbox",
            )
        present = None
        if user.extension:
            row = await session.get(Presence, user.extension)
            present = row.present if row is not None else True
        await session.commit()
    from cti.callbacks.service import CLOSING_REASONS

    rows = [
        {
            "h": h,
            "caller": auth.mask_number(h.caller, user),
            "overdue": h.status == "open" and h.deadline < now,
        }
        for h in hoppers
    ]
    return render(
        request,
        "team.html",
        team=services.config.team(team_id) if team_id else None,
        teams=services.config.teams,
        rows=rows,
        show_closed=show_closed,
        present=present,
        reasons=CLOSING_REASONS,
        can_act=user.role in ("member", "lead", "admin"),
    )


async def _hopper_for(request: web.Request, session: Any, user: User) -> Hopper:
    hopper = await session.get(Hopper, int(request.match_info["id"]))
    if hopper is None:
        raise json_error("no such callback request", 404)
    auth.require_team_access(user, hopper.team_id)
    return hopper  # type: ignore[no-any-return]


async def hopper_page(request: web.Request) -> web.Response:
    user = auth.require_role(request, "member", "lead", "supervisor", "agent")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        hopper = await _hopper_for(request, session, user)
        attempts = list(
            (
                await session.execute(
                    select(CallbackAttempt)
                    .where(CallbackAttempt.hopper_id == hopper.id)
                    .order_by(CallbackAttempt.id)
                )
            ).scalars()
        )
        from cti.store.models import HopperEvent

        history = list(
            (
                await session.execute(
                    select(HopperEvent)
                    .where(HopperEvent.hopper_id == hopper.id)
                    .order_by(HopperEvent.id)
                )
            ).scalars()
        )
        audit(
            session,
            actor=user.name,
            action="view",
            object_type="hopper",
            object_id=hopper.id,
            detail="detail",
        )
        await session.commit()
    from cti.callbacks.service import CLOSING_REASONS

    return render(
        request,
        "hopper.html",
        h=hopper,
        caller=auth.mask_number(hopper.caller, user),
        attempts=attempts,
        history=history,
        reasons=CLOSING_REASONS,
        overdue=hopper.status == "open" and hopper.deadline < datetime.now(UTC),
        can_act=user.role in ("member", "lead", "admin"),
    )


async def hopper_claim(request: web.Request) -> web.Response:
    from cti.callbacks.service import CallbackError, claim_hopper

    user = auth.require_role(request, "member", "lead")
    async with request.app[SERVICES].sessions() as session:
        hopper = await _hopper_for(request, session, user)
        try:
            claim_hopper(session, hopper, user.name)
        except CallbackError as exc:
            raise back(f"/team/hoppers/{hopper.id}", err=str(exc)) from None
        await session.commit()
    raise back("/team", team=hopper.team_id, msg="saved")


async def hopper_close(request: web.Request) -> web.Response:
    from cti.callbacks.service import CallbackError, close_hopper, record_closed

    user = auth.require_role(request, "member", "lead")
    services = request.app[SERVICES]
    form = await request.post()
    reason = str(form.get("reason", ""))
    note = str(form.get("note", ""))[:2000]
    async with services.sessions() as session:
        hopper = await _hopper_for(request, session, user)
        try:
            await close_hopper(
                session, hopper, reason, user.name, config=services.config, note=note
            )
        except CallbackError as exc:
            raise back(f"/team/hoppers/{hopper.id}", err=str(exc)) from None
        await session.commit()
    record_closed(services, hopper)
    raise back("/team", team=hopper.team_id, msg="saved")


async def presence(request: web.Request) -> web.Response:
    """Present/absent on the team number (the same table the feature codes write)."""
    user = auth.require_role(request, "member", "lead")
    if not user.extension:
        raise back("/team", err="no extension")
    form = await request.post()
    present = str(form.get("present", "")) == "1"
    async with request.app[SERVICES].sessions() as session:
        row = await session.get(Presence, user.extension)
        if row is None:
            row = Presence(extension=user.extension)
            session.add(row)
        row.present = present
        row.changed_at = datetime.now(UTC)
        row.changed_by = user.name
        audit(
            session,
            actor=user.name,
            action="presence",
            object_type="extension",
            object_id=user.extension,
            detail="present" if present else "absent",
        )
        await session.commit()
    raise back("/team", msg="saved")


# --- operator: announcements --------------------------------------------------------------


def _parse_local(value: str, tz: str) -> datetime | None:
    """A `datetime-local` form value in the exchange's time zone, as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        raise back("/operator", err=f"not a date and time: {value}") from None


async def operator_page(request: web.Request) -> web.Response:
    auth.require_role(request, "operator")
    services = request.app[SERVICES]
    from cti.announcements.service import is_active

    now = datetime.now(UTC)
    async with services.sessions() as session:
        items = list(
            (
                await session.execute(
                    select(Announcement)
                    .where(
                        (Announcement.ended_at.is_(None))
                        | (Announcement.ended_at > now - timedelta(days=7))
                    )
                    .order_by(Announcement.priority.desc(), Announcement.valid_from.desc())
                    .limit(100)
                )
            ).scalars()
        )
    rows = []
    for a in items:
        if a.ended_at is not None or (a.valid_until is not None and a.valid_until <= now):
            state = "ended state"
        elif is_active(a, now):
            state = "active"
        else:
            state = "scheduled"
        rows.append({"a": a, "state": state})
    scopes = [("all", "all")] + [(f"team:{t.id}", t.name) for t in services.config.teams]
    scopes += [(f"menu:{o.key}", o.label) for o in services.config.menu.options]
    # After a preview or a refused save the form comes back as the operator left it.
    draft = {key: request.query.get(key, "") for key in DRAFT_FIELDS}
    return render(
        request,
        "operator.html",
        rows=rows,
        scopes=scopes,
        preview=request.query.get("preview", ""),
        draft=draft,
    )


DRAFT_FIELDS = ("text", "kind", "scope", "valid_from", "valid_until", "priority")


def _draft_query(form: Any) -> dict[str, str]:
    return {key: str(form.get(key, "")) for key in DRAFT_FIELDS}


async def announcement_create(request: web.Request) -> web.Response:
    from cti.announcements.service import AnnouncementError, Draft, create

    user = auth.require_role(request, "operator")
    services = request.app[SERVICES]
    form = await request.post()
    tz = services.config.exchange.timezone
    try:
        priority = int(str(form.get("priority", "0")) or 0)
    except ValueError:
        raise back("/operator", err="priority must be a number", **_draft_query(form)) from None
    draft = Draft(
        kind=str(form.get("kind", "news")),
        text=str(form.get("text", "")),
        scope=str(form.get("scope", "all")),
        valid_from=_parse_local(str(form.get("valid_from", "")), tz) or datetime.now(UTC),
        valid_until=_parse_local(str(form.get("valid_until", "")), tz),
        priority=priority,
        author=user.name,
    )
    try:
        await create(services, draft)
    except (AnnouncementError, ValueError) as exc:
        raise back("/operator", err=str(exc), **_draft_query(form)) from None
    raise back("/operator", msg="saved")


async def announcement_end(request: web.Request) -> web.Response:
    from cti.announcements.service import end

    user = auth.require_role(request, "operator")
    try:
        await end(request.app[SERVICES], int(request.match_info["id"]), user.name)
    except LookupError:
        raise json_error("no such announcement", 404) from None
    raise back("/operator", msg="saved")


def _wav(path: Path) -> web.StreamResponse:
    if not path.is_file():
        raise json_error("no audio", 404)
    return web.FileResponse(
        path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, max-age=60"}
    )


async def announcement_audio(request: web.Request) -> web.StreamResponse:
    from cti.announcements.service import audio_file

    auth.require_role(request, "operator", "supervisor")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        found = await session.get(Announcement, int(request.match_info["id"]))
    if found is None or not found.audio:
        raise json_error("no such announcement", 404)
    return _wav(audio_file(services, found.audio))


async def announcement_preview(request: web.Request) -> web.Response:
    """Speak a draft so the operator hears it before putting it live."""
    from cti.announcements.service import AnnouncementError, check_text, speak

    auth.require_role(request, "operator")
    form = await request.post()
    text = str(form.get("text", ""))
    try:
        name = await speak(request.app[SERVICES], check_text(text))
    except (AnnouncementError, ValueError) as exc:
        raise back("/operator", err=str(exc), **_draft_query(form)) from None
    raise back("/operator", preview=name, **_draft_query(form))


async def preview_audio(request: web.Request) -> web.StreamResponse:
    from cti.announcements.service import audio_file

    auth.require_role(request, "operator")
    name = request.match_info["name"]
    if not name.startswith("tts-") or not name[4:].isalnum():
        raise json_error("no such preview", 404)
    return _wav(audio_file(request.app[SERVICES], name))


# --- supervisor: the board ----------------------------------------------------------------


async def board_figures(request: web.Request) -> dict[str, Any]:
    from cti.calls.norms import WINDOWS, hopper_gauges, norm_ratios

    services = request.app[SERVICES]
    config = services.config
    now = datetime.now(UTC)
    teams = [t.id for t in config.teams]
    names = {t.id: t.name for t in config.teams} | {"kcc": "KCC"}
    start_of_day = now.astimezone(ZoneInfo(config.exchange.timezone)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    from cti.store.models import Call

    async with services.sessions() as session:
        ratios = await norm_ratios(
            session, teams, now, config.exchange.timezone, config.queue.short_abandon_seconds
        )
        gauges = await hopper_gauges(session, now)
        calls_today = dict(
            (
                await session.execute(
                    select(Call.team_id, func.count())
                    .where(Call.started_at >= start_of_day)
                    .group_by(Call.team_id)
                )
            ).all()
        )
    rows = []
    for team in [*teams, "kcc"]:
        open_, overdue = gauges.get(team, (0, 0))
        rows.append(
            {
                "team": team,
                "name": names.get(team, team),
                "norm": {w: ratios.get((team, w)) for w in WINDOWS},
                "open": open_,
                "overdue": overdue,
                "calls_today": int(calls_today.get("" if team == "kcc" else team, 0)),
            }
        )
    waiting = _gauge(services, "bereik_calls_waiting")
    figures: dict[str, Any] = {
        "at": now.isoformat(),
        "windows": list(WINDOWS),
        "teams": rows,
        "waiting": waiting,
    }
    if config.kcc.mode == "queue":
        from cti.queue.http import queue_figures_json

        figures["queue"] = await queue_figures_json(services)
    return figures


def _gauge(services: Any, name: str) -> dict[str, float]:
    """Current values of one of our Prometheus gauges, by team (empty if not there)."""
    values: dict[str, float] = {}
    registry = getattr(services.metrics, "registry", None)
    if registry is None:
        return values
    for metric in registry.collect():
        if metric.name == name:
            for sample in metric.samples:
                values[sample.labels.get("team", "")] = sample.value
    return values


async def board_page(request: web.Request) -> web.Response:
    auth.require_role(request, "supervisor", "lead")
    figures = await board_figures(request)
    return render(request, "board.html", figures=figures)


async def board_json(request: web.Request) -> web.Response:
    auth.require_role(request, "supervisor", "lead")
    return web.json_response(await board_figures(request))


# --- admin: users -------------------------------------------------------------------------


async def admin_page(request: web.Request) -> web.Response:
    auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        users = list((await session.execute(select(User).order_by(User.name))).scalars())
    from cti.users.service import ROLES, is_locked

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
    from cti.users.service import UserError, create_user

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
    from cti.users.service import ROLES, UserError, set_password

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
    from cti.users.service import issue_token

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
