"""The KCC agent's live call: AMI events -> the agent's browser (server-sent events).

An AMI subscriber keeps, per extension, the call that rings or is answered there, from
`DialBegin`/`DialEnd`/`BridgeEnter`/`Hangup` whose channel is `PJSIP/<extension>-...`. Each
change is pushed to that extension's open `/events` streams at once (the bus hands us the
event; we only update a dict and put into queues, so the bus is never held up).

The same module serves the agent's actions on that call: transfer to a team (AMI
`BlindTransfer` of the agent's channel: the caller goes to the team number in
`from-internal`, the same team logic as a transfer from the phone), register the question
category, and create a hopper with a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cti.audit import audit
from cti.store.models import Call, Hopper
from cti.web.app import SERVICES
from cti.web.auth import current_user, require_role
from cti.web.jsonapi import json_error, json_object

log = logging.getLogger(__name__)

CHANNEL = re.compile(r"^PJSIP/(?P<ext>[0-9]{2,8})-[0-9a-f]+$")
# The virtual-hold placeholder: Local/<id>-<priority>-<arrival epoch>-<number>@bereik-vhold-line
PLACEHOLDER = re.compile(r"^Local/\d+-\d+-(?P<since>\d+)-[^@]*@bereik-vhold-line")
HEARTBEAT_SECONDS = 15.0
CLOSE: dict[str, Any] = {"close": True}  # put in a listener's queue: end that stream


@dataclass
class AgentCall:
    extension: str
    channel: str  # the agent's channel (PJSIP/2001-...)
    caller: str
    caller_name: str
    caller_channel: str
    linkedid: str  # the uniqueid of the caller's first channel: the calls row
    state: str = "ringing"  # ringing answered ended
    since: float = field(default_factory=time.time)
    # A callback that kept the citizen's place in the KCC's line (cti/queue/vhold.py): when
    # the citizen first came to the line, so the popup shows the total wait.
    callback_since: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LiveCalls:
    """Which call is at which extension, and who is listening for it."""

    def __init__(self) -> None:
        self.calls: dict[str, AgentCall] = {}
        self.listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    def listen(self, extension: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self.listeners.setdefault(extension, set()).add(queue)
        return queue

    def unlisten(self, extension: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.listeners.get(extension, set()).discard(queue)

    def close(self) -> None:
        """Ends every open stream (shutdown), so the server need not wait for browsers."""
        for queues in self.listeners.values():
            for queue in list(queues):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(CLOSE)

    def _push(self, call: AgentCall) -> None:
        for queue in list(self.listeners.get(call.extension, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck browser misses an update
                queue.put_nowait(call.as_json())

    def handle(self, event: Any) -> None:
        name = event.get("Event", "")
        if name == "DialBegin":
            match = CHANNEL.match(str(event.get("DestChannel", "")))
            if match:
                new = AgentCall(
                    extension=match["ext"],
                    channel=str(event["DestChannel"]),
                    caller=str(event.get("CallerIDNum", "")),
                    caller_name=str(event.get("CallerIDName", "")),
                    caller_channel=str(event.get("Channel", "")),
                    linkedid=str(event.get("Linkedid") or event.get("Uniqueid", "")),
                )
                placeholder = PLACEHOLDER.match(new.caller_channel)
                if placeholder:
                    new.callback_since = float(placeholder["since"])
                self.calls[new.extension] = new
                self._push(new)
            return
        call: AgentCall | None = None
        if name == "DialEnd":
            call = self._by_channel(str(event.get("DestChannel", "")))
            if call is not None:
                if event.get("DialStatus") == "ANSWER":
                    call.state = "answered"
                    call.since = time.time()
                else:
                    self._end(call)
                    return
                self._push(call)
        elif name == "BridgeEnter":
            call = self._by_channel(str(event.get("Channel", "")))
            if call is not None and call.state != "answered":
                call.state = "answered"
                self._push(call)
        elif name == "Hangup":
            call = self._by_channel(str(event.get("Channel", "")))
            if call is not None:
                self._end(call)

    def _by_channel(self, channel: str) -> AgentCall | None:
        match = CHANNEL.match(channel)
        if not match:
            return None
        call = self.calls.get(match["ext"])
        return call if call is not None and call.channel == channel else None

    def _end(self, call: AgentCall) -> None:
        call.state = "ended"
        self.calls.pop(call.extension, None)
        self._push(call)


# --- HTTP ----------------------------------------------------------------------------------


BOARD = web.AppKey("live_calls", LiveCalls)


def setup(app: web.Application, board: LiveCalls) -> None:
    app[BOARD] = board
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/events", events)
    app.router.add_get("/api/agent/call", agent_call)
    app.router.add_post("/api/agent/transfer", agent_transfer)
    app.router.add_post("/api/agent/category", agent_category)
    app.router.add_post("/api/agent/hopper", agent_hopper)
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
            "Cache-Control": "no-cache",
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


async def agent_transfer(request: web.Request) -> web.Response:
    """Blind transfer of the agent's answered call to a team number."""
    user = require_role(request, "agent")
    body = await json_object(request)
    services = request.app[SERVICES]
    team_id = str(body.get("team", ""))
    team = next((t for t in services.config.teams if t.id == team_id), None)
    if team is None:
        raise json_error(f"unknown team {team_id!r}")
    call = _current_call(request)
    if call.state != "answered":
        raise json_error("answer the call before transferring it", 409)
    if services.ami is None:
        raise json_error("the exchange is not reachable (AMI)", 503)
    from cti.ami.client import AmiActionFailed, AmiNotConnected, AmiTimeout

    try:
        await services.ami.action(
            {
                "Action": "BlindTransfer",
                "Channel": call.channel,
                "Context": "from-internal",
                "Exten": team.number,
            },
            timeout=5,
        )
    except AmiNotConnected:
        raise json_error(
            "the exchange is not reachable (AMI); transfer from your phone", 503
        ) from None
    except AmiTimeout:
        raise json_error(
            "the exchange did not answer in time; check the call on your phone", 504
        ) from None
    except AmiActionFailed as exc:
        raise json_error(f"the exchange refused the transfer: {exc}", 409) from None
    async with services.sessions() as session:
        row = await _call_row(session, call.linkedid)
        if row is not None:
            row.agent = row.agent or user.extension
        audit(
            session,
            actor=user.name,
            action="transfer",
            object_type="call",
            object_id=call.linkedid,
            detail=f"to team {team.id} ({team.number})",
        )
        await session.commit()
    return web.json_response({"transferred": True, "team": team.id, "number": team.number})


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
    category = str(body.get("category", "")).strip()
    if category not in services.config.categories:
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


async def agent_hopper(request: web.Request) -> web.Response:
    """A hopper from the KCC screen: for the current caller or a number typed in."""
    from cti.hoppers.service import HopperError, create_hopper

    user = require_role(request, "agent")
    body = await json_object(request)
    services = request.app[SERVICES]
    team_id = str(body.get("team", ""))
    if team_id not in {t.id for t in services.config.teams}:
        raise json_error(f"unknown team {team_id!r}")
    call = request.app[BOARD].calls.get(user.extension) if user.extension else None
    caller = str(body.get("caller") or (call.caller if call else "")).strip()
    if not re.fullmatch(r"\+?[0-9]{3,20}", caller):
        raise json_error("give the caller's phone number (digits)")
    note = str(body.get("note", ""))[:2000]
    category = str(body.get("category", ""))
    if category and category not in services.config.categories:
        raise json_error(f"unknown question category {category!r}")
    linkedid = str(body.get("call", "")) or (call.linkedid if call else "")
    try:
        hopper = await create_hopper(
            services,
            team_id=team_id,
            caller=caller,
            reason="manual",
            agent=user.extension,
            category=category,
            note=note,
            call_uniqueid=linkedid,
            actor=user.name,
        )
    except HopperError as exc:
        raise json_error(str(exc)) from None
    async with services.sessions() as session:
        audit(
            session,
            actor=user.name,
            action="create",
            object_type="hopper",
            object_id=hopper.id,
            detail=f"team {team_id} from the KCC screen",
        )
        await session.commit()
    return web.json_response(
        {"id": hopper.id, "team": hopper.team_id, "deadline": hopper.deadline.isoformat()},
        status=201,
    )


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
        for hopper in hoppers:
            audit(
                session,
                actor=user.name,
                action="view",
                object_type="hopper",
                object_id=hopper.id,
                detail="caller popup",
            )
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
