"""The team's screens: the group inbox, one hopper, claiming and closing it, presence.

Forms post back here (with the session's CSRF token, checked by the middleware) and
redirect (post/redirect/get), so a reload never repeats an action. The rules live in the
services (callbacks, presence); these handlers check access, call them and render.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cti.audit import audit_views
from cti.callbacks.service import (
    CLOSING_REASONS,
    CallbackError,
    claim_hopper,
    close_hopper,
    record_closed,
)
from cti.presence import is_present, set_presence
from cti.store.models import CallbackAttempt, Hopper, HopperEvent, User
from cti.voice.service import recordings_of
from cti.web.auth import (
    mask_number,
    may_handle,
    require_own_team,
    require_role,
    require_team_access,
)
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from cti.web.pages import back, render


def setup(app: web.Application) -> None:
    app.router.add_get("/team", team_page)
    app.router.add_get("/team/hoppers/{id:\\d+}", hopper_page)
    app.router.add_post("/team/hoppers/{id:\\d+}/claim", hopper_claim)
    app.router.add_post("/team/hoppers/{id:\\d+}/close", hopper_close)
    app.router.add_post("/team/presence", presence)


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
    require_team_access(user, wanted)
    return wanted


async def team_page(request: web.Request) -> web.Response:
    user = require_role(request, "member", "lead", "supervisor", "agent")
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
        audit_views(session, user.name, hoppers, "inbox")
        await session.commit()
    present = await is_present(services, user.extension) if user.extension else None
    recordings = await recordings_of(services, [h.id for h in hoppers])
    rows = [
        {
            "h": h,
            "caller": mask_number(h.caller, user),
            "overdue": h.status == "open" and h.deadline < now,
            "recordings": recordings.get(h.id, []),
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
        can_act=may_handle(user, team_id),
    )


async def _hopper_for(request: web.Request, session: Any, user: User) -> Hopper:
    hopper = await session.get(Hopper, int(request.match_info["id"]))
    if hopper is None:
        raise json_error("no such callback request", 404)
    require_team_access(user, hopper.team_id)
    return hopper  # type: ignore[no-any-return]


async def hopper_page(request: web.Request) -> web.Response:
    user = require_role(request, "member", "lead", "supervisor", "agent")
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
        history = list(
            (
                await session.execute(
                    select(HopperEvent)
                    .where(HopperEvent.hopper_id == hopper.id)
                    .order_by(HopperEvent.id)
                )
            ).scalars()
        )
        audit_views(session, user.name, [hopper], "detail")
        await session.commit()
    recordings = (await recordings_of(services, [hopper.id])).get(hopper.id, [])
    return render(
        request,
        "hopper.html",
        h=hopper,
        recordings=recordings,
        caller=mask_number(hopper.caller, user),
        attempts=attempts,
        history=history,
        reasons=CLOSING_REASONS,
        overdue=hopper.status == "open" and hopper.deadline < datetime.now(UTC),
        can_act=may_handle(user, hopper.team_id),
    )


async def hopper_claim(request: web.Request) -> web.Response:
    user = require_role(request, "member", "lead", "agent")
    async with request.app[SERVICES].sessions() as session:
        hopper = await _hopper_for(request, session, user)
        require_own_team(user, hopper.team_id)
        try:
            claim_hopper(session, hopper, user.name)
        except CallbackError as exc:
            raise back(f"/team/hoppers/{hopper.id}", err=str(exc)) from None
        await session.commit()
    raise back("/team", team=hopper.team_id, msg="saved")


async def hopper_close(request: web.Request) -> web.Response:
    user = require_role(request, "member", "lead", "agent")
    services = request.app[SERVICES]
    form = await request.post()
    reason = str(form.get("reason", ""))
    note = str(form.get("note", ""))[:2000]
    async with services.sessions() as session:
        hopper = await _hopper_for(request, session, user)
        require_own_team(user, hopper.team_id)
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
    user = require_role(request, "member", "lead")
    if not user.extension:
        raise back("/team", err="no extension")
    form = await request.post()
    present = str(form.get("present", "")) == "1"
    await set_presence(request.app[SERVICES], user.extension, present, actor=user.name)
    raise back("/team", msg="saved")
