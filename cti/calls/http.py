"""The KCC agent's live call and its actions, over HTTP.

GET  /events                    the agent's call as it rings, is answered and ends (SSE)
GET  /api/agent/call            the same, once
POST /api/agent/transfer        transfer the agent's call to a team number
POST /api/calls/{id}/transfer   transfer a call (by id or uniqueid) to a team number: an
                                agent only a call they are on, a supervisor any call
POST /api/agent/category        register the question category of a call
GET  /api/callers/{number}      earlier contacts and open hoppers of a number (audited): an
                                agent only for the caller of their own call (?call=)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cti.audit import audit, audit_views
from cti.calls.history import earlier_contacts
from cti.calls.live import CLOSE, HEARTBEAT_SECONDS, AgentCall, LiveCalls
from cti.calls.transfer import TransferError, transfer_to_team
from cti.privacy import national, own_call
from cti.store.models import Call, Hopper, User
from cti.web.auth import current_user, require_role, still_signed_in
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object, refusal
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
        raise refusal(exc) from None


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
    user = current_user(request)
    if user.role == "agent" and not await _on_call(request, user, call.uniqueid):
        # An agent moves only a call they are on; supervisors (and admins) any call.
        await _refused(request, "call", call.uniqueid, "transfer: not the agent's call")
        raise json_error("u kunt alleen een gesprek doorverbinden dat u zelf voert", 403)
    await _transfer(request, call.uniqueid, team)
    return web.json_response({"call": call.id, "team": team.id, "status": "transferring"})


async def _on_call(request: web.Request, user: User, uniqueid: str, number: str = "") -> bool:
    """Whether the user is on this call: the one at their phone now (ringing or answered),
    or their current or last answered call (cti.privacy.own_call); with `number`, also
    whether that call's caller has this number."""
    live = request.app[BOARD].calls.get(user.extension) if user.extension else None
    if live is not None and uniqueid and live.linkedid == uniqueid:
        return not number or national(live.caller) == national(number)
    async with request.app[SERVICES].sessions() as session:
        row = await own_call(session, user.extension, uniqueid)
    return row is not None and (not number or national(row.caller) == national(number))


async def _refused(request: web.Request, object_type: str, object_id: str, why: str) -> None:
    """A refused look-up or action on a caller's data, on record (BIO)."""
    async with request.app[SERVICES].sessions() as session:
        audit(session, current_user(request).name, "refuse", object_type, object_id, why)
        await session.commit()


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
    if user.role != "admin" and not await _on_call(request, user, linkedid):
        await _refused(request, "call", linkedid, "categorise: not the agent's call")
        raise json_error("u kunt alleen een gesprek registreren dat u voert of net voerde", 403)
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
    """Earlier contacts and open hoppers of a number, for the agent's popup (audited).

    An agent sees them only for the caller of a call they are on (`?call=`, the popup's
    call); an admin for any number. A refusal is audited too."""
    user = require_role(request, "agent")
    number = request.match_info["number"]
    services = request.app[SERVICES]
    current = str(request.query.get("call", ""))
    if user.role != "admin" and not await _on_call(request, user, current, number):
        await _refused(request, "caller", number, "history: not on a call with this caller")
        raise json_error("alleen de beller van een gesprek dat u voert of net voerde", 403)
    async with services.sessions() as session:
        calls = (await session.execute(earlier_contacts(number, current))).scalars()
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
