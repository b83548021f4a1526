"""The announcements API (its routes added by `bereik serve`).

    POST   /api/announcements              JSON {text, kind, scope, valid_from, valid_until,
                                            priority} -> 201 {id, audio_url, ...}
    POST   /api/announcements/upload       multipart: file (wav/mp3/ogg) + the same fields
    GET    /api/announcements?active=true  the list (active only, or the last 500)
    GET    /api/announcements/{id}         one
    PATCH  /api/announcements/{id}         JSON {text} and/or {valid_until}: new text and
                                            audio (a failed synthesis keeps the old audio,
                                            422 says why), or a longer/shorter validity
    DELETE /api/announcements/{id}         ends it now (kept as history)
    GET    /api/announcements/{id}/audio   the wav callers hear

Reading needs any signed-in user (a KCC agent may want to know what callers heard);
changes need the role operator or supervisor (admin always). Errors are JSON
{"error": "..."} with a 4xx status.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from cti.announcements import service
from cti.announcements.service import AnnouncementError, Draft
from cti.store.models import Announcement
from cti.web.auth import current_user, require_role
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, refusal

WRITERS = ("operator", "supervisor")
MAX_UPLOAD = 20 * 1024 * 1024


def setup(app: web.Application) -> None:
    app.router.add_post("/api/announcements", create)
    app.router.add_post("/api/announcements/upload", upload)
    app.router.add_get("/api/announcements", listing)
    app.router.add_get("/api/announcements/{id:\\d+}", one)
    app.router.add_patch("/api/announcements/{id:\\d+}", change)
    app.router.add_delete("/api/announcements/{id:\\d+}", end)
    app.router.add_get("/api/announcements/{id:\\d+}/audio", audio)


def _time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise AnnouncementError(f"{name} must be a string like 2026-12-01T17:00:00+01:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise AnnouncementError(f"{name} is not an ISO 8601 time: {value!r}") from None
    return moment


def _draft(fields: dict[str, Any], author: str) -> Draft:
    priority = fields.get("priority", 0)
    if isinstance(priority, str) and priority.strip().isdigit():
        priority = int(priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise AnnouncementError("priority must be a whole number from 0 to 100")
    for name in ("text", "kind", "scope"):
        if not isinstance(fields.get(name, ""), str):
            raise AnnouncementError(f"{name} must be a string")
    return Draft(
        kind=str(fields.get("kind", "")),
        text=str(fields.get("text", "")),
        scope=str(fields.get("scope", "all") or "all"),
        valid_from=_time(fields.get("valid_from"), "valid_from"),
        valid_until=_time(fields.get("valid_until"), "valid_until"),
        priority=priority,
        author=author,
    )


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AnnouncementError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AnnouncementError("the body must be a JSON object")
    return body


def _created(request: web.Request, announcement: Announcement) -> web.Response:
    data = service.as_json(request.app[SERVICES], announcement)
    return web.json_response(data, status=201, headers={"Location": str(data["audio_url"])})


async def create(request: web.Request) -> web.Response:
    user = require_role(request, *WRITERS)
    try:
        draft = _draft(await _json(request), user.name)
        made = await service.create(request.app[SERVICES], draft)
    except AnnouncementError as exc:
        raise refusal(exc) from None
    return _created(request, made)


async def upload(request: web.Request) -> web.Response:
    user = require_role(request, *WRITERS)
    if not request.content_type.startswith("multipart/"):
        raise json_error("send multipart/form-data with a 'file' field", 400)
    fields: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bereik-upload-") as tmp:
        saved: Path | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            name = getattr(part, "name", None)
            if name == "file":
                saved = Path(tmp) / "upload"
                size = 0
                with saved.open("wb") as out:
                    while chunk := await part.read_chunk():  # type: ignore[union-attr]
                        size += len(chunk)
                        if size > MAX_UPLOAD:
                            raise json_error("the file is larger than 20 MB", 413)
                        out.write(chunk)
            elif name:
                fields[name] = (await part.text())[:5000]  # type: ignore[union-attr]
        if saved is None:
            raise json_error("no 'file' field with the audio", 400)
        try:
            made = await service.create(
                request.app[SERVICES], _draft(fields, user.name), upload=saved
            )
        except AnnouncementError as exc:
            raise refusal(exc) from None
    return _created(request, made)


async def listing(request: web.Request) -> web.Response:
    current_user(request)
    services = request.app[SERVICES]
    active = request.query.get("active", "").lower() in ("1", "true", "yes")
    found = await service.listing(services, only_active=active)
    return web.json_response([service.as_json(services, a) for a in found])


def _ident(request: web.Request) -> int:
    raw = request.match_info["id"]
    # The route only takes digits; more than 12 is no announcement of ours, and would
    # overflow the database's integer (a 500) instead of being a plain 404.
    if len(raw) > 12:
        raise json_error("no such announcement", 404)
    return int(raw)


async def _find(request: web.Request) -> Announcement | None:
    async with request.app[SERVICES].sessions() as session:
        return await session.get(Announcement, _ident(request))


async def one(request: web.Request) -> web.Response:
    current_user(request)
    found = await _find(request)
    if found is None:
        raise json_error("no such announcement", 404)
    return web.json_response(service.as_json(request.app[SERVICES], found))


async def change(request: web.Request) -> web.Response:
    user = require_role(request, *WRITERS)
    services = request.app[SERVICES]
    try:
        body = await _json(request)
        ident = _ident(request)
        if not body or set(body) - {"text", "valid_until"}:
            raise AnnouncementError('send {"text": "..."} and/or {"valid_until": "..."}')
        if "valid_until" in body:
            until = _time(body["valid_until"], "valid_until")
            await service.change_until(services, ident, until, user.name)
        if "text" in body:
            if not isinstance(body["text"], str):
                raise AnnouncementError("text must be a string")
            await service.change_text(services, ident, body["text"], user.name)
    except LookupError:
        raise json_error("no such announcement", 404) from None
    except AnnouncementError as exc:
        # The old text and audio stay live; the operator reads why the new one failed.
        raise refusal(exc) from None
    found = await _find(request)
    assert found is not None
    return web.json_response(service.as_json(services, found))


async def end(request: web.Request) -> web.Response:
    user = require_role(request, *WRITERS)
    services = request.app[SERVICES]
    try:
        ended = await service.end(services, _ident(request), user.name)
    except LookupError:
        raise json_error("no such announcement", 404) from None
    return web.json_response(service.as_json(services, ended))


async def audio(request: web.Request) -> web.StreamResponse:
    current_user(request)
    services = request.app[SERVICES]
    found = await _find(request)
    if found is None or not found.audio:
        raise json_error("no such announcement", 404)
    path = service.audio_file(services, found.audio)
    if not path.is_file():
        raise json_error("the audio file is missing", 404)
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})
