"""Deny by default: sign-in, API tokens, roles, team access, CSRF, sign-in backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bereik.serve import web_app
from cti.calls.live import LiveCalls
from cti.services import Services
from cti.store.models import AuditEntry, User
from cti.users import backoff
from cti.users.service import SignInWaits, create_user, issue_token, verify_password
from cti.web import auth
from cti.web.app import create_app
from dialplan.config import Config
from tests.support import second_factor
from tests.support.memory_services import TWO_TEAMS, memory_services

CONFIG = Config.model_validate(TWO_TEAMS)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path) as services:
        yield services


async def team_only(request: web.Request) -> web.Response:
    user = auth.current_user(request)
    auth.require_team_access(user, request.match_info["team"])
    return web.json_response({"ok": True})


async def change(request: web.Request) -> web.Response:
    auth.require_role(request, "member", "lead")
    return web.json_response({"changed": True})


async def fake_login(request: web.Request) -> web.Response:
    """Signs in as the named user (stands in for the real login form in this unit test)."""
    from cti.web.context import SERVICES

    async with request.app[SERVICES].sessions() as db:
        user = (await db.execute(select(User).where(User.name == request.query["u"]))).scalar_one()
    auth.sign_in(request, user)
    return web.json_response({"csrf": auth.csrf_token(request)})


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    def plugin(app: web.Application) -> None:
        app.router.add_get("/api/teams/{team}/thing", team_only)
        app.router.add_post("/api/change", change)
        app.router.add_get("/login", fake_login)
        app.router.add_get("/page", team_only)

    async with services.sessions() as db:
        await create_user(db, "marieke", "geheim-wachtwoord", "member", team_id="burgerzaken")
        await create_user(db, "sam", "geheim-wachtwoord", "supervisor")
        await db.commit()
    async with TestClient(TestServer(create_app(services, [plugin]))) as test_client:
        yield test_client


async def test_open_paths_and_deny_by_default(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    response = await client.get("/api/teams/burgerzaken/thing")
    assert response.status == 401
    assert "error" in await response.json()
    page = await client.get("/page", allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"].startswith("/login?next=")


async def test_session_team_access_and_csrf(client: TestClient) -> None:  # type: ignore[type-arg]
    login = await client.get("/login", params={"u": "marieke"})
    csrf = (await login.json())["csrf"]
    cookie = login.cookies[auth.COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert (await client.get("/api/teams/burgerzaken/thing")).status == 200
    other = await client.get("/api/teams/belastingen/thing")
    assert other.status == 403
    assert (await other.json())["error"]
    # A change without the CSRF token is refused, with it accepted.
    assert (await client.post("/api/change", json={})).status == 403
    assert (await client.post("/api/change", data={"x": "1"})).status == 403
    assert (await client.post("/api/change", data={"csrf_token": csrf})).status == 200
    ok = await client.post("/api/change", json={}, headers={auth.CSRF_HEADER: csrf})
    assert ok.status == 200


async def test_tampered_cookie_is_not_a_session(client: TestClient) -> None:  # type: ignore[type-arg]
    login = await client.get("/login", params={"u": "marieke"})
    value = login.cookies[auth.COOKIE].value
    client.session.cookie_jar.clear()
    assert (await client.get("/api/teams/burgerzaken/thing")).status == 401
    good = {"Cookie": f"{auth.COOKIE}={value}"}
    assert (await client.get("/api/teams/burgerzaken/thing", headers=good)).status == 200
    bad = {"Cookie": f"{auth.COOKIE}={value[:-2]}00"}
    assert (await client.get("/api/teams/burgerzaken/thing", headers=bad)).status == 401


async def test_role_and_api_token(services: Services, client: TestClient) -> None:  # type: ignore[type-arg]
    async with services.sessions() as db:
        sam = (await db.execute(select(User).where(User.name == "sam"))).scalar_one()
        token = await issue_token(db, sam)
        await db.commit()
        stored = sam.api_token_hash
    assert token not in stored
    bearer = {"Authorization": f"Bearer {token}"}
    # A supervisor sees every team; the token needs no CSRF token, but the role still counts.
    assert (await client.get("/api/teams/belastingen/thing", headers=bearer)).status == 200
    assert (await client.post("/api/change", json={}, headers=bearer)).status == 403
    wrong = {"Authorization": "Bearer brk_nonsense"}
    assert (await client.get("/api/teams/belastingen/thing", headers=wrong)).status == 401


async def test_wrong_passwords_make_the_guessing_address_wait_never_the_owner_elsewhere(
    services: Services,
) -> None:
    async with services.sessions() as db:
        await create_user(db, "marieke", "geheim-wachtwoord", "member", team_id="burgerzaken")
        await db.commit()
    waits: list[int] = []
    for _ in range(backoff.FREE_FAILURES):
        assert (
            await verify_password(
                services.sessions, "marieke", "fout", "127.0.0.2", on_wait=lambda: waits.append(1)
            )
            is None
        )
    assert waits == [1]  # the fifth miss started a wait (the /metrics counter's hook)
    # The guessing address waits, even with the right password...
    with pytest.raises(SignInWaits):
        await verify_password(services.sessions, "marieke", "geheim-wachtwoord", "127.0.0.2")
    # ...while the owner at her own address signs in as always.
    assert (
        await verify_password(services.sessions, "marieke", "geheim-wachtwoord", "127.0.0.3")
        is not None
    )
    # After the wait the guessing address may try again; the next miss waits twice as long.
    later = datetime.now(UTC) + backoff.FIRST_WAIT + timedelta(seconds=1)
    assert (
        await verify_password(services.sessions, "marieke", "fout", "127.0.0.2", now=later) is None
    )
    with pytest.raises(SignInWaits) as waited:
        await verify_password(services.sessions, "marieke", "fout", "127.0.0.2", now=later)
    assert waited.value.until - later == 2 * backoff.FIRST_WAIT
    async with services.sessions() as db:
        actions = (await db.execute(select(AuditEntry.action))).scalars().all()
    assert actions.count("lock") == 2 and "login" in actions
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
    assert row.active  # nothing on the account itself


def test_mask_number() -> None:
    assert auth.mask_number("0612345678") == "06******78"
    member = User(name="m", role="member", team_id="x", password_hash="")
    assert auth.mask_number("0612345678", member) == "0612345678"


async def test_every_route_of_every_plugin_needs_sign_in(services: Services) -> None:
    """All routes `bereik serve` mounts, enumerated from its router: none is open by mistake."""
    app = web_app(services, LiveCalls())
    routes = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            routes.append((route.method, path.replace("{id:\\d+}", "1").replace("{id}", "1")))
    assert len(routes) > 20
    checked = 0
    async with TestClient(TestServer(app)) as client:
        for method, path in routes:
            concrete = "/".join("1" if part.startswith("{") else part for part in path.split("/"))
            if concrete.startswith("/static"):
                concrete = "/static/bereik.css"
            response = await client.request(method, concrete, allow_redirects=False)
            if auth.is_open(concrete):
                continue
            checked += 1
            assert response.status in (401, 302), (method, concrete, response.status)
            if response.status == 302:
                assert response.headers["Location"].startswith("/login")
            else:
                assert "error" in await response.json()
    assert checked > 20


async def test_every_link_on_the_supervisor_board_leads_to_a_page(services: Services) -> None:
    """The board as `bereik serve` mounts it, signed in as a supervisor: no dead link."""
    import re

    async with services.sessions() as db:
        await create_user(db, "sam", "geheim-wachtwoord", "supervisor")
        await db.commit()
    async with TestClient(TestServer(web_app(services, LiveCalls()))) as client:
        form = await (await client.get("/login")).text()
        login_token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert login_token, form
        signed_in = await client.post(
            "/login",
            data={
                "name": "sam",
                "password": "geheim-wachtwoord",
                "next": "/board",
                "login_token": login_token.group(1),
            },
            allow_redirects=False,
        )
        # A supervisor sets up the second factor first (tests/support/second_factor.py).
        target = await second_factor.over_http(client, str, "sam", signed_in.headers["Location"])
        signed_in = await client.get(target)
        assert signed_in.status == 200 and signed_in.url.path == "/board"
        links = set(re.findall(r'href="(/[^"#?]*)', await signed_in.text()))
        assert "/static/bereik.css" in links, links  # the page's own links are found
        for link in sorted(links):
            response = await client.get(link, allow_redirects=False)
            assert response.status == 200, (link, response.status)
