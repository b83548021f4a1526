"""The holes a security review found in sign-in, sessions and tokens (issue 20), closed.

Each test drives the real web app (aiohttp test server, the real pages plugin) or the
real account service on SQLite, the way an attacker or a user would.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bereik.serve import web_app
from cti.calls import http as calls_http
from cti.calls import live
from cti.services import Services
from cti.store.models import AuditEntry, Base, LoginFailure, User
from cti.users import backoff
from cti.users import service as users
from cti.users.service import create_user, issue_token
from cti.web import auth, pages
from cti.web.app import create_app
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services
from tests.support.web_client import PASSWORD, Client, login_token, post_login


def config(**server: Any) -> Config:
    return Config.model_validate({**TWO_TEAMS, "server": server})


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(config(login_attempts_per_minute=5), tmp_path) as services:
        async with services.sessions() as db:
            await create_user(db, "marieke", PASSWORD, "member", "burgerzaken", "3001")
            await create_user(db, "beheer", PASSWORD, "admin")
            await db.commit()
        yield services


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web_app(services, live.LiveCalls())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def sign_in(client: Client, name: str = "marieke") -> str:
    client.session.cookie_jar.clear()  # a fresh browser
    response = await post_login(client, await login_token(client), name=name)
    assert response.status == 303 and "err=" not in response.headers["Location"]
    home = await (await client.get("/team" if name == "marieke" else "/admin")).text()
    found = re.search(r'name="csrf-token" content="([^"]+)"', home)
    assert found
    return found[1]


async def audit_count(services: Services, action: str) -> int:
    async with services.sessions() as db:
        return int(
            await db.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
            )
            or 0
        )


# --- 1. the lockout counter, the rate limit, the form token -------------------------------


async def test_parallel_wrong_passwords_from_two_processes_make_the_address_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "CHECKS_WAITING", 100)  # every guess reaches the counter
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    # Two engines on one database file: two `bereik serve` processes.
    engines = [create_async_engine(url, connect_args={"timeout": 30}) for _ in range(2)]
    async with engines[0].begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    makers = [async_sessionmaker(e, expire_on_commit=False) for e in engines]
    async with makers[0]() as db:
        await create_user(db, "marieke", PASSWORD, "member", "burgerzaken")
        await db.commit()
    try:
        for _ in range(3):
            tries = [
                users.verify_password(makers[i % 2], "marieke", "fout", "127.0.0.2")
                for i in range(10)
            ]
            results = await asyncio.gather(*tries, return_exceptions=True)
            assert all(r is None or isinstance(r, users.SignInWaits) for r in results), results
        # The guessing address waits, whichever process it reaches, also with the right
        # password; the count was shared (no process let more than the free misses by).
        with pytest.raises(users.SignInWaits):
            await users.verify_password(makers[1], "marieke", PASSWORD, "127.0.0.2")
        async with makers[0]() as db:
            row = (await db.execute(select(LoginFailure))).scalar_one()
        assert row.blocked_until is not None and row.blocked_until > datetime.now(UTC)
        assert row.failures == backoff.FREE_FAILURES
        # The owner elsewhere is not locked out.
        assert await users.verify_password(makers[0], "marieke", PASSWORD, "127.0.0.3")
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_sign_in_form_token_works_once(services: Services, client: Client) -> None:
    token = await login_token(client)
    first = await post_login(client, token, password="fout")
    assert "err=wrong+login" in first.headers["Location"]
    again = await post_login(client, token, password="fout")
    assert "err=form+expired" in again.headers["Location"]
    async with services.sessions() as db:
        row = (await db.execute(select(LoginFailure))).scalar_one()
    assert row.failures == 1  # the replayed form was not even checked


async def test_sign_ins_per_address_are_limited_and_audited_once(
    services: Services, client: Client
) -> None:
    statuses = []
    for _ in range(12):
        form = await client.get("/login")
        if form.status != 200:  # an address over its limit gets no form either
            statuses.append(form.status)
            continue
        response = await post_login(client, await login_token(client), name="nobody")
        statuses.append(response.status)
    assert statuses[:5] == [303] * 5
    assert set(statuses[5:]) == {429}
    # Five misses let through: the fifth also started this address's wait ("lock").
    assert await audit_count(services, "login_failed") == 4
    assert await audit_count(services, "lock") == 1
    assert await audit_count(services, "login_throttled") == 1


# --- 2. argon2 off the event loop, with a cap ---------------------------------------------


async def test_password_checks_leave_the_event_loop_free_and_refuse_beyond_the_cap(
    services: Services,
) -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # Twenty sessions opened at once first: the database pool's connections are set up
    # before the ticker runs, so the stalls measured are those of the checks alone.
    async def look_up() -> None:
        async with services.sessions() as session:
            await users.get_user(session, "nobody")

    await asyncio.gather(*(look_up() for _ in range(20)))
    # And the garbage collected now: in a test process that has run hundreds of tests a
    # full collection alone can pause the loop for tenths of a second (not argon2's doing).
    gc.collect()
    ticking = asyncio.create_task(ticker())
    attempts = [users.verify_password(services.sessions, "nobody", "fout") for _ in range(20)]
    started = time.perf_counter()
    results = await asyncio.gather(*attempts, return_exceptions=True)
    elapsed = time.perf_counter() - started
    ticking.cancel()
    busy = [r for r in results if isinstance(r, users.LoginBusy)]
    checked = [r for r in results if r is None]
    assert len(checked) == users.CHECKS_AT_ONCE + users.CHECKS_WAITING
    assert len(busy) == 20 - len(checked)
    print(f"{len(checked)} checks in {elapsed:.2f} s; longest loop stall {max(gaps):.3f} s")
    # One argon2 check on the loop would stall it for its whole length (0.1-1 s here).
    assert max(gaps) < min(0.25, elapsed / len(checked) / 2)


async def test_a_saturated_sign_in_answers_503_at_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "_pending", users.CHECKS_AT_ONCE + users.CHECKS_WAITING)
    started = time.perf_counter()
    response = await post_login(client, await login_token(client))
    assert response.status == 503 and response.headers["Retry-After"]
    assert time.perf_counter() - started < 0.5


# --- 3. the redirect after sign-in ---------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "https://evil.example/",
        "/ /evil.example",
        "evil.example",
        "/team?closed=1",  # a path of this site: kept
    ],
)
async def test_sign_in_redirects_only_to_paths_of_this_site(client: Client, target: str) -> None:
    response = await post_login(client, await login_token(client), next_=target)
    assert response.status == 303
    location = response.headers["Location"]
    if target == "/team?closed=1":
        assert location == target
    else:
        assert location == "/"


# --- 10. revocable sessions, no-store, expiring and revocable tokens ----------------------


async def test_logout_ends_the_session_also_for_a_copied_cookie(client: Client) -> None:
    csrf = await sign_in(client)
    copied = client.session.cookie_jar.filter_cookies(client.make_url("/"))[auth.COOKIE].value
    out = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.status == 303
    client.session.cookie_jar.clear()
    replay = await client.get("/api/board", headers={"Cookie": f"{auth.COOKIE}={copied}"})
    assert replay.status == 401


async def test_a_new_password_and_deactivation_end_open_sessions(
    services: Services, client: Client
) -> None:
    await sign_in(client)
    assert (await client.get("/team")).status == 200
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        await users.set_password(db, row, "een-nieuw-wachtwoord")
        await db.commit()
    assert (await client.get("/api/board")).status == 401

    response = await post_login(client, await login_token(client), "een-nieuw-wachtwoord")
    assert "err=" not in response.headers["Location"]
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[auth.COOKIE].value
    assert (await client.get("/team")).status == 200
    csrf = await sign_in(client, "beheer")
    deactivated = await client.post(
        f"/admin/users/{row.id}",
        data={"csrf_token": csrf, "role": "member", "team": "burgerzaken", "active": "0"},
        allow_redirects=False,
    )
    assert "msg=saved" in deactivated.headers["Location"]
    client.session.cookie_jar.clear()
    marieke = {"Cookie": f"{auth.COOKIE}={cookie}"}
    assert (await client.get("/api/board", headers=marieke)).status == 401


async def test_deactivating_a_user_ends_their_open_events_stream(
    services: Services, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls_http, "HEARTBEAT_SECONDS", 0.2)
    await sign_in(client)
    stream = await client.get("/events")
    assert stream.status == 200
    assert stream.headers["Cache-Control"] == "no-store"
    await stream.content.readuntil(b"\n\n")  # retry: line
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        users.revoke_sessions(row)
        row.active = False
        await db.commit()
    started = time.perf_counter()
    rest = await asyncio.wait_for(stream.content.read(), 5)
    assert time.perf_counter() - started < 2
    assert b"event:" not in rest


async def test_pages_and_api_answers_are_not_stored(client: Client) -> None:
    await sign_in(client)
    for path in ("/team", "/api/board", "/login"):
        response = await client.get(path)
        assert response.headers.get("Cache-Control") == "no-store", path
    static = await client.get("/static/bereik.css")
    assert static.headers.get("Cache-Control") != "no-store"


async def test_api_tokens_expire_and_can_be_revoked(services: Services, client: Client) -> None:
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        token = await issue_token(db, row, days=1)
        await db.commit()
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/team", headers=bearer)).status == 200
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        row.api_token_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        await db.commit()
    assert (await client.get("/team", headers=bearer)).status == 401

    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        token = await issue_token(db, row)
        await db.commit()
        user_id = row.id
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/team", headers=bearer)).status == 200
    csrf = await sign_in(client, "beheer")
    revoked = await client.post(
        f"/admin/users/{user_id}/token/revoke", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert revoked.status == 303
    assert (await client.get("/team", headers=bearer)).status == 401


# --- 11. strict values: the admin page's extension -----------------------------------------


async def test_an_extension_with_a_line_break_is_refused_on_the_admin_page(
    services: Services, client: Client
) -> None:
    csrf = await sign_in(client, "beheer")
    injected = "3001\r\nAction: Originate\r\nChannel: Local/0900123@x"
    created = await client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "name": "kees",
            "password": PASSWORD,
            "role": "agent",
            "extension": injected,
        },
        allow_redirects=False,
    )
    assert created.headers["Location"] == "/admin"  # the reason travels in the session
    page = await (await client.get("/admin")).text()
    assert "extension: 2-8 digits" in page and 'class="flash err"' in page
    async with services.sessions() as db:
        marieke = (await db.execute(select(User).where(User.name == "marieke"))).scalar_one()
        assert (await db.execute(select(User).where(User.name == "kees"))).first() is None
    updated = await client.post(
        f"/admin/users/{marieke.id}",
        data={"csrf_token": csrf, "role": "member", "team": "burgerzaken", "extension": injected},
        allow_redirects=False,
    )
    assert updated.headers["Location"] == "/admin"
    assert "extension: 2-8 digits" in await (await client.get("/admin")).text()
    async with services.sessions() as db:
        row = await db.get(User, marieke.id)
        assert row is not None and row.extension == "3001"


# --- 7 and 8: reassign masks the number; one rule for claiming and closing --------------


@pytest.fixture
async def api(services: Services) -> AsyncIterator[tuple[Client, dict[str, dict[str, str]], int]]:
    from cti.callbacks.http import setup as callbacks_setup
    from cti.hoppers.http import setup as hoppers_setup
    from cti.hoppers.service import create_hopper

    hopper = await create_hopper(
        services, team_id="burgerzaken", caller="0612345678", reason="no_answer"
    )
    headers: dict[str, dict[str, str]] = {}
    async with services.sessions() as db:
        for name, role, team in (
            ("sam", "supervisor", ""),
            ("anna", "agent", ""),
            ("bart", "member", "belastingen"),
            ("carla", "member", "burgerzaken"),
            ("lotte", "lead", "burgerzaken"),
        ):
            user = await create_user(db, name, PASSWORD, role, team)
            headers[name] = {"Authorization": f"Bearer {await issue_token(db, user)}"}
        await db.commit()
    app = create_app(services, [hoppers_setup, callbacks_setup])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, headers, hopper.id


async def test_reassign_answers_with_the_masked_number_for_a_supervisor(
    api: tuple[Client, dict[str, dict[str, str]], int],
) -> None:
    client, headers, hopper_id = api
    listed = await (await client.get("/api/hoppers", headers=headers["sam"])).json()
    assert listed["hoppers"][0]["caller"] == "06******78"
    moved = await client.post(
        f"/api/hoppers/{hopper_id}/reassign", json={"team": "belastingen"}, headers=headers["sam"]
    )
    assert moved.status == 200
    body = await moved.text()
    assert "0612345678" not in body and "06******78" in body


async def test_only_the_hoppers_own_team_claims_and_closes_it(
    api: tuple[Client, dict[str, dict[str, str]], int],
) -> None:
    client, headers, hopper_id = api
    close = {"reason": "solved_by_email"}
    for name in ("sam", "anna", "bart"):
        claimed = await client.post(f"/api/hoppers/{hopper_id}/claim", headers=headers[name])
        closed = await client.post(
            f"/api/hoppers/{hopper_id}/close", json=close, headers=headers[name]
        )
        assert (claimed.status, closed.status) == (403, 403), name
    claimed = await client.post(f"/api/hoppers/{hopper_id}/claim", headers=headers["carla"])
    assert claimed.status == 200
    closed = await client.post(
        f"/api/hoppers/{hopper_id}/close", json=close, headers=headers["lotte"]
    )
    assert closed.status == 200 and (await closed.json())["status"] == "closed"


# --- 5. the recording PIN: lockout across calls, minimum length --------------------------


async def test_wrong_recording_pins_lock_the_extension_across_calls(tmp_path: Path) -> None:
    from cti.announcements import pinlock
    from cti.store.models import OutboxMail

    settings = Config.model_validate(
        {"operators": {"pin": "804613"}, "kcc": {"supervisor_mailbox": "kcc@example.org"}}
    )
    async with memory_services(settings, tmp_path) as services:
        # Five calls of one wrong PIN each (a caller who hangs up and dials *77 again).
        locked = [await pinlock.count_failure(services, "4001") for _ in range(5)]
        assert locked == [False, False, False, False, True]
        assert await pinlock.is_locked(services, "4001")
        assert not await pinlock.is_locked(services, "4002")  # per extension
        later = datetime.now(UTC) + pinlock.LOCKOUT + timedelta(seconds=1)
        assert not await pinlock.is_locked(services, "4001", now=later)
        assert await audit_count(services, "pin_refused") == 5
        assert await audit_count(services, "pin_locked") == 1
        async with services.sessions() as db:
            mails = (await db.execute(select(OutboxMail))).scalars().all()
        assert [m.recipient for m in mails] == ["kcc@example.org"]
        assert "4001" in mails[0].subject
        assert "bereik_recording_pin_lockouts_total 1.0" in services.metrics.render().decode()
        # A right PIN starts the count again.
        await pinlock.count_failure(services, "4002")
        await pinlock.clear(services, "4002")
        assert [await pinlock.count_failure(services, "4002") for _ in range(4)] == [False] * 4


@pytest.mark.parametrize("pin", ["4321", "12345", "000000", "12 34 56", "١٢٣٤٥٦"])
def test_a_short_or_weak_recording_pin_is_refused_by_the_configuration(pin: str) -> None:
    with pytest.raises(ValueError, match=r"operators\.pin"):
        Config.model_validate({"operators": {"pin": pin}})


@pytest.mark.parametrize(
    "settings",
    [
        {"teams": [{"id": "x", "name": "X", "number": "7001", "mailbox": "x@example.org\n"}]},
        {"mail": {"sender": "bereik@example.org\r\nBcc: someone@example.org"}},
        {"phones": [{"extension": "3001", "name": "Anna\n[evil]\ntype=endpoint"}]},
        {"hours": {"mon": "08:30-17:00\n"}},
        {"callbacks": {"caller_id": "14070\n"}},
        {"exchange": {"name": "Gemeente\x00"}},
    ],
)
def test_configuration_values_with_line_breaks_or_control_characters_are_refused(
    settings: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        Config.model_validate(settings)


# --- 12. forwarded headers only from a trusted proxy --------------------------------------


async def test_forwarded_headers_count_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    for proxies, secure in (([], False), (["127.0.0.1"], True)):
        settings = config(trusted_proxies=proxies, login_attempts_per_minute=3)
        async with memory_services(settings, tmp_path) as services:
            app = create_app(services, [pages.setup])
            async with TestClient(TestServer(app)) as client:
                page = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
                cookie = page.cookies[auth.COOKIE]
                assert bool(cookie["secure"]) is secure, proxies
                # The rate limit keys on the forwarded address only behind the proxy.
                statuses = set()
                for n in range(6):
                    form = await client.get("/login")
                    if form.status == 429:
                        statuses.add(429)
                        continue
                    token = re.search(r'name="login_token" value="([^"]+)"', await form.text())
                    assert token
                    response = await client.post(
                        "/login",
                        data={"name": "x", "password": "y", "login_token": token[1]},
                        headers={"X-Forwarded-For": f"192.0.2.{n}"},
                        allow_redirects=False,
                    )
                    statuses.add(response.status)
                assert (429 in statuses) is not secure, proxies


def test_the_cli_issues_expiring_tokens_and_revokes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import os

    from bereik.cli import main

    umask = os.umask(0o022)  # main() sets bereik's umask; give this process its own back
    request_umask = umask

    settings = tmp_path / "bereik.toml"
    settings.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "b.db"}"\n')
    cfg = ["--config", str(settings)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "kees", "--role", "agent", "--password-stdin", *cfg]) == 0
    assert main(["users", "token", "kees", "--days", "2", *cfg]) == 0
    assert main(["users", "list", *cfg]) == 0
    listed = capsys.readouterr().out
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    assert f"token until {until}" in listed
    assert main(["users", "revoke-token", "kees", *cfg]) == 0
    assert main(["users", "list", *cfg]) == 0
    assert "no token" in capsys.readouterr().out
    assert main(["users", "token", "kees", "--days", "400", *cfg]) == 2
    os.umask(request_umask)
