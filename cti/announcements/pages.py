"""The operator's screen: announcements made, heard before they go live, and ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from cti.announcements.service import (
    AnnouncementError,
    Draft,
    audio_file,
    check_text,
    create,
    end,
    is_active,
    speak,
)
from cti.services import Services
from cti.store.models import Announcement
from cti.web.auth import require_role
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from cti.web.pages import back, render
from dialplan.config import MenuOption

# What each announcement and info option saved today, from the feature that counts it
# (cti/voice/savings.py registers itself here, so this screen does not import it):
# {item: {"saved": n, "went_on": n}} with items "announcement:<id>" and "info:<key>".
Savings = Callable[[Services], Awaitable[dict[str, dict[str, int]]]]
SAVINGS: web.AppKey[Savings] = web.AppKey("announcement_savings")


def setup(app: web.Application) -> None:
    app.router.add_get("/operator", operator_page)
    app.router.add_post("/operator/announcements", announcement_create)
    app.router.add_post("/operator/announcements/{id:\\d+}/end", announcement_end)
    app.router.add_get("/operator/announcements/{id:\\d+}/audio", announcement_audio)
    app.router.add_post("/operator/preview", announcement_preview)
    app.router.add_get("/operator/preview/{name}", preview_audio)


def _parse_local(value: str, tz: str) -> datetime | None:
    """A `datetime-local` form value in the exchange's time zone, as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        raise back("/operator", err=f"not a date and time: {value}") from None


async def operator_page(request: web.Request) -> web.Response:
    require_role(request, "operator")
    services = request.app[SERVICES]
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
    counter = request.app.get(SAVINGS)
    saved = await counter(services) if counter is not None else {}
    rows = []
    for a in items:
        if a.ended_at is not None or (a.valid_until is not None and a.valid_until <= now):
            state = "ended state"
        elif is_active(a, now):
            state = "active"
        else:
            state = "scheduled"
        rows.append({"a": a, "state": state, "heard": saved.get(f"announcement:{a.id}")})
    scopes = [("all", "all")] + [(f"team:{t.id}", t.name) for t in services.config.teams]
    scopes += [(f"menu:{o.key}", o.label) for o in services.config.menu.options]
    # After a preview or a refused save the form comes back as the operator left it.
    draft = {key: request.query.get(key, "") for key in DRAFT_FIELDS}
    return render(
        request,
        "operator.html",
        rows=rows,
        # The menu's channel-steering options with what they saved today.
        info=[
            {"key": item.partition(":")[2], "label": label, "heard": saved.get(item)}
            for item, label in info_options(services.config.menu.options)
        ],
        scopes=scopes,
        preview=request.query.get("preview", ""),
        draft=draft,
    )


def info_options(options: list[MenuOption], path: str = "") -> list[tuple[str, str]]:
    """(item, label) of every channel-steering option of the menu, submenus included: the
    items the IVR reports as heard ("info:<key>", "info:3.1" in a submenu)."""
    found: list[tuple[str, str]] = []
    for option in options:
        if option.info and not option.team:
            found.append((f"info:{path}{option.key}", option.label))
        found += info_options(option.submenu, f"{path}{option.key}.")
    return found


DRAFT_FIELDS = ("text", "kind", "scope", "valid_from", "valid_until", "priority")


def _draft_query(form: Any) -> dict[str, str]:
    return {key: str(form.get(key, "")) for key in DRAFT_FIELDS}


async def announcement_create(request: web.Request) -> web.Response:
    user = require_role(request, "operator")
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
    user = require_role(request, "operator")
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
    require_role(request, "operator", "supervisor")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        found = await session.get(Announcement, int(request.match_info["id"]))
    if found is None or not found.audio:
        raise json_error("no such announcement", 404)
    return _wav(audio_file(services, found.audio))


async def announcement_preview(request: web.Request) -> web.Response:
    """Speak a draft so the operator hears it before putting it live."""
    require_role(request, "operator")
    form = await request.post()
    text = str(form.get("text", ""))
    try:
        name = await speak(request.app[SERVICES], check_text(text))
    except (AnnouncementError, ValueError) as exc:
        raise back("/operator", err=str(exc), **_draft_query(form)) from None
    raise back("/operator", preview=name, **_draft_query(form))


async def preview_audio(request: web.Request) -> web.StreamResponse:
    require_role(request, "operator")
    name = request.match_info["name"]
    if not name.startswith("tts-") or not name[4:].isalnum():
        raise json_error("no such preview", 404)
    return _wav(audio_file(request.app[SERVICES], name))
