"""The accounts' screens: the admin's users, and one's own second factor.

The admin creates and changes accounts, issues API tokens, lifts sign-in waits and takes
a lost second factor away; an admin or supervisor sets up their second factor (the
secret as text and as an otpauth:// address, confirmed by a code) and gets recovery codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cti.audit import audit
from cti.store.models import User
from cti.users import backoff, second_factor
from cti.users.service import (
    ROLES,
    UserError,
    check_extension,
    create_user,
    issue_token,
    revoke_sessions,
    revoke_token,
    set_password,
)
from cti.web import auth
from cti.web.context import SERVICES
from cti.web.jsonapi import json_error
from cti.web.pages import SECRET_BOX, back, render

SETUP = auth.SECOND_FACTOR_SETUP


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/users", user_create)
    app.router.add_post("/admin/users/{id:\\d+}", user_update)
    app.router.add_post("/admin/users/{id:\\d+}/token", user_token)
    app.router.add_post("/admin/users/{id:\\d+}/token/revoke", user_token_revoke)
    app.router.add_get(SETUP, second_factor_page)
    app.router.add_post(SETUP, second_factor_confirm)
    app.router.add_post(f"{SETUP}/recovery-codes", recovery_codes_renew)


# --- admin: users -------------------------------------------------------------------------


async def admin_page(request: web.Request) -> web.Response:
    auth.require_role(request, "admin")
    services = request.app[SERVICES]
    async with services.sessions() as session:
        users = list((await session.execute(select(User).order_by(User.name))).scalars())
    return render(
        request,
        "admin.html",
        users=users,
        roles=ROLES,
        teams=services.config.teams,
        waits=await backoff.waiting_addresses(services.sessions, datetime.now(UTC)),
        enrolled={u.id: second_factor.enrolled(u) for u in users},
    )


def _team_field(request: web.Request, value: str) -> str:
    if value and value not in {t.id for t in request.app[SERVICES].config.teams}:
        raise back("/admin", err=f"unknown team {value}")
    return value


async def user_create(request: web.Request) -> web.Response:
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
    admin = auth.require_role(request, "admin")
    form = await request.post()
    services = request.app[SERVICES]
    async with services.sessions() as session:
        user = await _user_of(request, session)
        role = str(form.get("role", user.role))
        if role not in ROLES:
            raise back("/admin", err="unknown role")
        try:
            extension = check_extension(str(form.get("extension", user.extension)).strip())
        except UserError as exc:
            raise back("/admin", err=str(exc)) from None
        user.role = role
        user.team_id = _team_field(request, str(form.get("team", user.team_id)))
        user.extension = extension
        active = str(form.get("active", "1")) == "1"
        if user.active and not active:
            revoke_sessions(user)  # a deactivated user's open screens end at once
        user.active = active
        changes = []
        if form.get("reset_second_factor"):
            # A lost phone and lost recovery codes: set up anew at the next sign-in.
            second_factor.reset(user)
            await second_factor.forget_recovery_codes(session, user.id)
            revoke_sessions(user)
            changes.append("second factor reset")
        password = str(form.get("password", ""))
        if password:
            try:
                await set_password(session, user, password)  # argon2 off the event loop
            except UserError as exc:
                raise back("/admin", err=str(exc)) from None
        audit(
            session,
            actor=admin.name,
            action="update",
            object_type="user",
            object_id=user.id,
            detail=" ".join(
                [f"role={user.role} team={user.team_id} active={user.active}", *changes]
            ),
        )
        await session.commit()
        name = user.name
    if form.get("release"):
        await backoff.release(services.sessions, name)
    raise back("/admin", msg="saved")


async def _user_of(request: web.Request, session: Any) -> User:
    """The account named by the URL's id; 404 if there is none."""
    user: User | None = await session.get(User, int(request.match_info["id"]))
    if user is None:
        raise json_error("no such user", 404)
    return user


async def user_token(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        user = await _user_of(request, session)
        token = await issue_token(session, user)
        audit(session, actor=admin.name, action="token", object_type="user", object_id=user.id)
        await session.commit()
    # Shown once on this page; the page is private (no-store) and only to the admin.
    return render(request, "token.html", token=token, name=user.name)


async def user_token_revoke(request: web.Request) -> web.Response:
    admin = auth.require_role(request, "admin")
    async with request.app[SERVICES].sessions() as session:
        user = await _user_of(request, session)
        revoke_token(user)
        audit(
            session, actor=admin.name, action="token_revoke", object_type="user", object_id=user.id
        )
        await session.commit()
    raise back("/admin", msg="saved")


# --- one's own second factor ----------------------------------------------------------------


def _privileged(request: web.Request) -> User:
    user = auth.current_user(request)
    if not second_factor.required(user):
        raise auth.forbidden("a second factor is for admins and supervisors")
    return user


async def second_factor_page(request: web.Request) -> web.Response:
    user = _privileged(request)
    services = request.app[SERVICES]
    box = request.app[SECRET_BOX]
    if second_factor.enrolled(user):
        return render(request, "second_factor.html", since=user.totp_enabled_at, secret="")
    async with services.sessions() as session:
        row = await session.get(User, user.id)
        assert row is not None  # signed in a moment ago
        secret = second_factor.pending_secret(row, box)
        if secret is None:
            secret = second_factor.start(row, box)
            await session.commit()
    return render(
        request,
        "second_factor.html",
        since=None,
        secret=secret,
        # Four letters a group: easier to type into an app.
        grouped=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        uri=second_factor.provisioning_uri(user, secret, services.config.exchange.name),
    )


async def second_factor_confirm(request: web.Request) -> web.Response:
    user = _privileged(request)
    if second_factor.enrolled(user):
        raise back(SETUP)
    form = await request.post()
    services = request.app[SERVICES]
    codes = await second_factor.confirm(
        services.sessions, user.id, request.app[SECRET_BOX], str(form.get("code", ""))
    )
    if codes is None:
        raise back(SETUP, err="wrong code")
    async with services.sessions() as session:
        audit(
            session,
            actor=user.name,
            action="second_factor_on",
            object_type="user",
            object_id=user.id,
        )
        await session.commit()
    return render(request, "recovery_codes.html", codes=codes)


async def recovery_codes_renew(request: web.Request) -> web.Response:
    user = _privileged(request)
    if not second_factor.enrolled(user):
        raise back(SETUP)
    services = request.app[SERVICES]
    codes = await second_factor.renew_recovery_codes(services.sessions, user.id)
    async with services.sessions() as session:
        audit(
            session, actor=user.name, action="recovery_codes", object_type="user", object_id=user.id
        )
        await session.commit()
    return render(request, "recovery_codes.html", codes=codes)
