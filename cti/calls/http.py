"""The KCC agent's live call and its actions, over HTTP.

GET  /events                    the agent's call as it rings, is answered and ends (SSE)
GET  /api/agent/call            the same, once
POST /api/agent/transfer        transfer the agent's call to a team number
POST /api/calls/{id}/transfer   transfer a call (by id or uniqueid) to a team number
POST /api/agent/category        register the question category of a call
GET  /api/callers/{number}      earlier contacts and open hoppers of a number (audited)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cti.audit import audit, audit_views
from cti.calls.live import CLOSE, HEARTBEAT_SECONDS, AgentCall, LiveCalls
from cti.calls.transfer import TransferError, transfer_to_team
from cti.store.models import Call, Hopper
from cti.web.auth import current_user, require_role, still_signed_in
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object
from dialplan.config import Team

BOARD = web.AppKey("live_calls", LiveCalls)


def setup(app: web.Application, board: LiveCalls) -> None:
    app[BOARD] = board
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/events", events)
    app.router.add_get("/api/agent/call", agent_call)
    app.router.add_post("/api/agent/transfer", agent_transfer)
    app.router.add_post("/api/calls/{id}/transfer", call_transfer)
    app.router.add_post("/api/agent/category", agent_category)
    app.router.add_get("/api/callers/{number}", caller_history)


async def _close_streams(app: web.Application) -> None:
    app[BOARD].close()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the signed-in user's extension's call, as it changes."""
    user = current_user(request)
    if not user.extension:
        raise json_error("your account has no extension", 409)
    live = request.app[BOARD]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = live.listen(user.extension)
    try:
        current = live.calls.get(user.extension)
        await response.write(b"retry: 1000\n\n")
        if current is not None:
            await response.write(_sse(current.as_json()))
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                # A stream outlives its page: each heartbeat asks again whether the
                # session is still valid (logout, new password, deactivation end it).
                if not await still_signed_in(request):
                    break
                await response.write(b": keepalive\n\n")
                continue
            if data is CLOSE:
                break
            await response.write(_sse(data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        live.unlisten(user.extension, queue)
    return response


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: call\ndata: {json.dumps(data)}\n\n".encode()


async def agent_call(request: web.Request) -> web.Response:
    user = current_user(request)
    call = request.app[BOARD].calls.get(user.extension) if user.extension else None
    return web.json_response({"call": call.as_json() if call else None})


def _current_call(request: web.Request) -> AgentCall:
    user = require_role(request, "agent")
    call = request.app[BOARD].calls.get(user.extension) if user.extension else None
    if call is None:
        raise json_error("there is no call at your extension", 409)
    return call


def _team(services: Any, wanted: str) -> Team:
    """A team by id or by number."""
    team = services.config.team_by_number(wanted) or next(
        (t for t in services.config.teams if t.id == wanted), None
    )
    if team is None:
        raise json_error(f"unknown team {wanted!r}; give a team id or number")
    return team  # type: ignore[no-any-return]


async def _transfer(request: web.Request, uniqueid: str, team: Team) -> None:
    user = current_user(request)
    try:
        await transfer_to_team(
            request.app[SERVICES],
            uniqueid,
            team,
            actor=user.name,
            agent=user.extension or user.name,
        )
    except TransferError as exc:
        raise json_error(str(exc), exc.status) from None


async def agent_transfer(request: web.Request) -> web.Response:
    """Transfer of the agent's answered call to a team number (the KCC screen)."""
    require_role(request, "agent")
    body = await json_object(request)
    team = _team(request.app[SERVICES], str(body.get("team", "")))
    call = _current_call(request)
    if call.state != "answered":
        raise json_error("answer the call before transferring it", 409)
    await _transfer(request, call.linkedid, team)
    return web.json_response({"transferred": True, "team": team.id, "number": team.number})


async def call_transfer(request: web.Request) -> web.Response:
    """Transfer of any call in progress, by its id or uniqueid (the API)."""
    require_role(request, "agent", "supervisor")
    body = await json_object(request)
    services = request.app[SERVICES]
    team = _team(services, str(body.get("team", "")))
    key = request.match_info["id"]
    async with services.sessions() as session:
        call = await session.scalar(
            select(Call).where(Call.id == int(key))
            if key.isdigit() and len(key) <= 12
            else select(Call).where(Call.uniqueid == key)
        )
    if call is None:
        raise json_error(f"call {key} does not exist", 404)
    await _transfer(request, call.uniqueid, team)
    return web.json_response({"call": call.id, "team": team.id, "status": "transferring"})


async def _call_row(session: Any, linkedid: str) -> Call | None:
    result = await session.execute(
        select(Call).where((Call.uniqueid == linkedid) | (Call.linkedid == linkedid)).limit(1)
    )
    row: Call | None = result.scalar_one_or_none()
    return row


async def agent_category(request: web.Request) -> web.Response:
    """Register the question category of the agent's current (or just ended) call."""
    user = require_role(request, "agent")
    body = await json_object(request)
    services = request.app[SERVICES]
    category = str(body.get("category", "")).strip().lower()
    if category not in services.config.known_categories():
        raise json_error(f"unknown question category {category!r}")
    linkedid = str(body.get("call", "")) or _current_call(request).linkedid
    async with services.sessions() as session:
        row = await _call_row(session, linkedid)
        if row is None:
            raise json_error("that call is not known (yet)", 404)
        row.category = category
        row.agent = row.agent or user.extension
        audit(
            session,
            actor=user.name,
            action="categorise",
            object_type="call",
            object_id=row.uniqueid,
            detail=category,
        )
        await session.commit()
    return web.json_response({"call": linkedid, "category": category})


async def caller_history(request: web.Request) -> web.Response:
    """Earlier contacts and open hoppers of a number, for the agent's popup (audited)."""
    user = require_role(request, "agent")
    number = request.match_info["number"]
    services = request.app[SERVICES]
    current = str(request.query.get("call", ""))
    async with services.sessions() as session:
        calls = (
            await session.execute(
                select(Call)
                .where(Call.caller == number, Call.uniqueid != current)
                .order_by(Call.started_at.desc())
                .limit(10)
            )
        ).scalars()
        hoppers = list(
            (
                await session.execute(
                    select(Hopper)
                    .where(Hopper.caller == number, Hopper.status == "open")
                    .order_by(Hopper.deadline)
                )
            ).scalars()
        )
        audit_views(session, user.name, hoppers, "caller popup")
        audit(session, actor=user.name, action="view", object_type="caller", object_id=number)
        contacts = [
            {
                "at": c.started_at.isoformat(),
                "entry": c.entry,
                "route": c.route,
                "outcome": c.outcome,
                "team": c.team_id,
                "category": c.category,
            }
            for c in calls
        ]
        await session.commit()
    teams = {t.id: t.name for t in services.config.teams}
    return web.json_response(
        {
            "number": number,
            "contacts": contacts,
            "hoppers": [
                {
                    "id": h.id,
                    "team": h.team_id,
                    "team_name": teams.get(h.team_id, h.team_id),
                    "deadline": h.deadline.isoformat(),
                    "reason": h.reason,
                    "note": h.note,
                    "category": h.category,
                }
                for h in hoppers
            ],
        }
    )
