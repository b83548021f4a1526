"""The hopper JSON API.

GET  /api/hoppers?team=&status=      hoppers the user may see (their team; all for KCC)
POST /api/hoppers                    a hopper made by hand (the KCC screen's form, or any
                                     API client), e.g. after a transfer nobody answered
POST /api/hoppers/{id}/reassign      pass a hopper to another team (wrong team)

Making a hopper has one request schema (caller, team, reason, category, note,
call_uniqueid), one set of rules (cti.hoppers.service.create_hopper) and answers in Dutch,
as the service's refusals do. `call_uniqueid` links that call (its spoken question, its
outcome) only when it is the user's own current or last call and the caller's number is
the hopper's (cti.privacy.own_call); otherwise the hopper is still made, unlinked, the
answer says why in `call_not_linked`, and the refusal is audited.

Every view and change writes an audit row in the same transaction (BIO).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cti.audit import audit, audit_views
from cti.hoppers.service import (
    KCC_TEAM,
    STATUSES,
    HopperError,
    create_hopper,
    hopper_json,
    list_hoppers,
    reassign_hopper,
)
from cti.privacy import national, own_call
from cti.store.models import Hopper
from cti.web.auth import (
    ALL_TEAMS_ROLES,
    current_user,
    mask_number,
    require_role,
    require_team_access,
)
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error, json_object, refusal

KCC_ROLES = ("agent", "supervisor")
# A number as a person types it: digits with spaces, dashes, dots or brackets, and an
# optional leading +. Free text is refused rather than mined for digits: "bel Jan (7x)"
# must not become a hopper for the number 7.
TYPED_NUMBER = re.compile(r"\+?[0-9][0-9 ().-]{2,39}")


async def _body(request: web.Request) -> dict[str, Any]:
    refusal = "de inhoud moet een JSON-object zijn"
    return await json_object(request, not_json=refusal, not_object=refusal)


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str | int):
        raise json_error(f"{key} moet tekst zijn")
    return str(value).strip()


def _known_teams(request: web.Request) -> list[str]:
    return [t.id for t in request.app[SERVICES].config.teams] + [KCC_TEAM]


async def get_hoppers(request: web.Request) -> web.Response:
    user = current_user(request)
    team = request.query.get("team", "")
    status = request.query.get("status", "")
    if status and status not in STATUSES:
        raise json_error(f"status must be one of {', '.join(STATUSES)}")
    if team:
        if team not in _known_teams(request):
            raise json_error(f"unknown team {team!r}")
        require_team_access(user, team)
        teams: list[str] | None = [team]
    elif user.role in ALL_TEAMS_ROLES:
        teams = None
    else:
        teams = [user.team_id] if user.team_id else []
    services = request.app[SERVICES]
    async with services.sessions() as session:
        found = await list_hoppers(session, teams=teams, status=status or None)
        result = []
        for hopper in found:
            result.append(_masked_json(hopper, user))
        audit_views(session, user.name, found)
        await session.commit()
    return web.json_response({"hoppers": result})


async def post_hopper(request: web.Request) -> web.Response:
    user = require_role(request, *KCC_ROLES)
    data = await _body(request)
    services = request.app[SERVICES]
    caller = _text(data, "caller")
    if caller and not TYPED_NUMBER.fullmatch(caller):
        raise json_error(
            "caller: geef een telefoonnummer in cijfers (spaties, streepjes en + mogen)"
        )
    call_uniqueid = _text(data, "call_uniqueid")
    not_linked = await _unlinkable(services, user, call_uniqueid, caller)
    try:
        hopper = await create_hopper(
            services,
            team_id=_text(data, "team"),
            caller=caller,
            reason=_text(data, "reason", "manual") or "manual",
            agent=user.extension or user.name,
            category=_text(data, "category"),
            note=_text(data, "note"),
            call_uniqueid="" if not_linked else call_uniqueid,
            actor=user.name,
        )
    except HopperError as exc:
        raise refusal(exc) from None
    async with services.sessions() as session:
        audit(session, user.name, "create", "hopper", hopper.id)
        if not_linked:
            audit(session, user.name, "refuse", "call", call_uniqueid, f"link: {not_linked}")
        await session.commit()
        fresh = await _load(session, hopper.id)
    answer = _masked_json(fresh or hopper, user)
    if not_linked:
        # The request is kept (the citizen waits for it); only the call stays unlinked.
        answer["call_not_linked"] = not_linked
    return web.json_response(answer, status=201)


async def _unlinkable(services: Any, user: Any, call_uniqueid: str, caller: str) -> str:
    """Why the named call may not be linked to the hopper (its recording, its outcome),
    or "" when it may: only the user's own current or last call, with the same number."""
    if not call_uniqueid:
        return ""
    async with services.sessions() as session:
        call = await own_call(session, user.extension, call_uniqueid)
    if call is None:
        return "dit gesprek is niet uw huidige of vorige gesprek; niet gekoppeld"
    if national(call.caller) != national(caller):
        return "het nummer is niet dat van de beller van dit gesprek; niet gekoppeld"
    return ""


def _masked_json(hopper: Hopper, user: Any) -> dict[str, Any]:
    """A hopper as every answer shows it: the number masked for roles that see it masked."""
    data = hopper_json(hopper)
    data["caller"] = mask_number(hopper.caller, user)
    return data


async def _load(session: Any, hopper_id: int) -> Hopper | None:
    return await session.scalar(
        select(Hopper).options(selectinload(Hopper.events)).where(Hopper.id == hopper_id)
    )


async def post_reassign(request: web.Request) -> web.Response:
    user = current_user(request)
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or len(raw_id) > 12:
        raise json_error("hopper id must be a number")
    hopper_id = int(raw_id)
    data = await _body(request)
    to_team = _text(data, "team")
    if not to_team:
        raise json_error("give the team to pass the hopper to")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        current = await session.get(Hopper, hopper_id)
    if current is None:
        raise json_error(f"hopper {hopper_id} does not exist", 404)
    require_team_access(user, current.team_id)
    try:
        await reassign_hopper(
            services, hopper_id, to_team=to_team, actor=user.name, note=_text(data, "note")
        )
    except HopperError as exc:
        raise refusal(exc) from None
    async with services.sessions() as session:
        audit(session, user.name, "reassign", "hopper", hopper_id, f"to {to_team}")
        await session.commit()
        fresh = await _load(session, hopper_id)
    assert fresh is not None
    return web.json_response(_masked_json(fresh, user))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/hoppers", get_hoppers)
    app.router.add_post("/api/hoppers", post_hopper)
    app.router.add_post("/api/hoppers/{id}/reassign", post_reassign)
