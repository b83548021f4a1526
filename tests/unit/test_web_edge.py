"""The web edge (issue 26, item 8), on the real web app and the real HTTP listener class:
security headers on every answer, only known message keys shown, the second factor's
secrets at rest and its codes used once, account saves hashing off the event loop, and
the listener's deadlines for idle and half-sent connections."""

from __future__ import annotations

import asyncio
import re
import stat
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bereik.serve import web_app
from cti.calls import live
from cti.services import Services
from cti.store.models import AuditEntry, RecoveryCode, User
from cti.users import second_factor
from cti.users import service as users
from cti.users.service import create_user
from cti.web import server
from dialplan.config import Config
from tests.support import second_factor as tests_second_factor
from tests.support.memory_services import TWO_TEAMS, memory_services
from tests.support.web_client import PASSWORD, Client, login_token, post_login

SECURITY_HEADERS = (
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(Config.model_validate(TWO_TEAMS), tmp_path) as services:
        async with services.sessions() as db:
            await create_user(db, "marieke", PASSWORD, "member", "burgerzaken", "3001")
            await create_user(db, "beheer", PASSWORD, "admin")
            await db.commit()
        yield services


@pytest.fixture
async def client(services: Services) -> AsyncIterator[Client]:
    async with TestClient(TestServer(web_app(services, live.LiveCalls()))) as test_client:
        yield test_client


async def csrf_of(client: Client, path: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', await (await client.get(path)).text())
    assert found
    return found[1]


# --- headers ----------------------------------------------------------------------------------


async def test_every_kind_of_answer_carries_csp_nosniff_referrer_and_no_framing(
    client: Client,
) -> None:
    answers = {
        "sign-in page": await client.get("/login"),
        "static file": await client.get("/static/bereik.js"),
        "metrics": await client.get("/metrics"),
        "api refusal": await client.get("/api/hoppers"),
        "no such page": await client.get("/nothing-here", allow_redirects=False),
    }
    for what, answer in answers.items():
        for header in SECURITY_HEADERS:
            assert header in answer.headers, (what, header)
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, what
        assert "unsafe-inline" not in policy, what
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    await post_login(client, await login_token(client))
    page = await (await client.get("/team")).text()
    for header in SECURITY_HEADERS:
        assert header in (await client.get("/team")).headers
    # The policy runs no inline script: the pages have none (the texts are JSON data).
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts
    for attributes, _body in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"


# --- messages ---------------------------------------------------------------------------------


async def test_a_link_cannot_put_its_own_words_on_the_sign_in_page(client: Client) -> None:
    forged = "Uw account is verlopen. Bel 0900-1234 om het te herstellen."
    page = await (await client.get("/login", params={"err": forged, "msg": forged})).text()
    assert "0900-1234" not in page
    assert 'class="flash' not in page
    # A known key still shows its text (the redirects of the screens use these).
    page = await (await client.get("/login", params={"err": "wrong login"})).text()
    assert "Onjuiste naam of wachtwoord." in page


async def test_a_validation_message_of_our_own_is_shown_once_from_the_session(
    client: Client,
) -> None:
    await post_login(client, await login_token(client), name="beheer")
    csrf = await csrf_of(client, "/admin")
    created = await client.post(
        "/admin/users",
        data={"csrf_token": csrf, "name": "kees", "password": "kort", "role": "agent"},
        allow_redirects=False,
    )
    assert created.headers["Location"] == "/admin"  # no text in the address
    page = await (await client.get("/admin")).text()
    assert "password must be at least 8 characters" in page
    assert "password must be at least" not in await (await client.get("/admin")).text()


# --- account saves off the event loop ---------------------------------------------------------


async def test_an_account_saved_on_the_admin_screen_is_hashed_off_the_event_loop(
    client: Client, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = users.hash_password

    def watched(password: str) -> str:
        threads.append(threading.current_thread().name)
        return real(password)

    monkeypatch.setattr(users, "hash_password", watched)
    await post_login(client, await login_token(client), name="beheer")
    csrf = await csrf_of(client, "/admin")
    created = await client.post(
        "/admin/users",
        data={"csrf_token": csrf, "name": "kees", "password": PASSWORD, "role": "agent"},
        allow_redirects=False,
    )
    assert created.headers["Location"] == "/admin?msg=saved"
    async with services.sessions() as db:
        kees = (await db.execute(select(User).where(User.name == "kees"))).scalar_one()
    changed = await client.post(
        f"/admin/users/{kees.id}",
        data={"csrf_token": csrf, "role": "agent", "password": PASSWORD + "-nieuw"},
        allow_redirects=False,
    )
    assert changed.headers["Location"] == "/admin?msg=saved"
    assert len(threads) == 2
    assert all(name.startswith("argon2") for name in threads), threads


# --- the second factor --------------------------------------------------------------------------


async def test_the_totp_secret_is_encrypted_at_rest_and_its_key_file_is_private(
    client: Client, services: Services
) -> None:
    await post_login(client, await login_token(client), name="beheer")
    secret = tests_second_factor.secret_of(f"{client.make_url('')}|beheer")
    async with services.sessions() as db:
        row = (await db.execute(select(User).where(User.name == "beheer"))).scalar_one()
        codes = (await db.execute(select(RecoveryCode.code_hash))).scalars().all()
    assert row.totp_enabled_at is not None
    assert secret not in row.totp_secret and row.totp_secret.startswith("v1:")
    key = services.instance_dir / second_factor.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # Another instance's key does not open it (a copied database alone gives nothing).
    other = second_factor.SecretBox(bytes(32))
    with pytest.raises(second_factor.SecondFactorError):
        other.open(row.id, row.totp_secret)
    assert len(codes) == second_factor.RECOVERY_CODES
    assert all(re.fullmatch(r"[0-9a-f]{64}", c) for c in codes)  # hashes only


async def test_a_totp_code_and_a_recovery_code_each_work_once(services: Services) -> None:
    box = second_factor.SecretBox.of_instance(services.instance_dir)
    async with services.sessions() as db:
        user = (await db.execute(select(User).where(User.name == "beheer"))).scalar_one()
        secret = second_factor.start(user, box)
        await db.commit()
        user_id = user.id
    now = time.time()
    wrong = "000000" if pyotp.TOTP(secret).at(now) != "000000" else "111111"
    assert await second_factor.confirm(services.sessions, user_id, box, wrong, now) is None
    codes = await second_factor.confirm(
        services.sessions, user_id, box, pyotp.TOTP(secret).at(now), now
    )
    assert codes is not None and len(set(codes)) == second_factor.RECOVERY_CODES
    # The code that confirmed it is used: not again (an overheard code is worth nothing).
    code = pyotp.TOTP(secret).at(now)
    assert await second_factor.check(services.sessions, user_id, box, code, now) is None
    later = now + 30
    code = pyotp.TOTP(secret).at(later)
    assert await second_factor.check(services.sessions, user_id, box, code, later) == "totp"
    assert await second_factor.check(services.sessions, user_id, box, code, later) is None
    # A code from far away in time is refused.
    old = pyotp.TOTP(secret).at(now - 600)
    assert await second_factor.check(services.sessions, user_id, box, old, later) is None
    recovery = codes[3].upper().replace("-", " ")  # typed loosely
    assert await second_factor.check(services.sessions, user_id, box, recovery, later) == "recovery"
    assert await second_factor.check(services.sessions, user_id, box, codes[3], later) is None


async def test_an_admin_with_a_second_factor_needs_the_code_and_wrong_codes_make_the_address_wait(
    client: Client, services: Services
) -> None:
    key = f"{client.make_url('')}|beheer"
    await post_login(client, await login_token(client), name="beheer")  # sets it up
    client.session.cookie_jar.clear()
    answer = await client.post(
        "/login",
        data={"name": "beheer", "password": PASSWORD, "login_token": await login_token(client)},
        allow_redirects=False,
    )
    assert answer.headers["Location"].startswith("/login/code")
    # The password alone opens nothing.
    assert (
        (await client.get("/admin", allow_redirects=False)).headers["Location"].startswith("/login")
    )
    assert (await client.get("/api/hoppers")).status == 401
    page = await (await client.get(answer.headers["Location"])).text()
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    for _ in range(5):
        wrong = await client.post(
            "/login/code",
            data={"code": "12345", "csrf_token": found[1], "next": "/"},
            allow_redirects=False,
        )
        assert wrong.headers["Location"].startswith("/login/code?err=wrong+code")
    waits = await client.post(
        "/login/code",
        data={"code": await tests_second_factor.code(key), "csrf_token": found[1]},
        allow_redirects=False,
    )
    assert "err=sign-in+waits" in waits.headers["Location"]
    assert "bereik_login_lockouts_total 1.0" in await (await client.get("/metrics")).text()
    async with services.sessions() as db:
        actions = (await db.execute(select(AuditEntry.action))).scalars().all()
    assert actions.count("lock") == 1


async def test_a_supervisor_without_a_second_factor_reaches_only_its_set_up(
    client: Client, services: Services
) -> None:
    async with services.sessions() as db:
        await create_user(db, "sam", PASSWORD, "supervisor")
        await db.commit()
    answer = await client.post(
        "/login",
        data={"name": "sam", "password": PASSWORD, "login_token": await login_token(client)},
        allow_redirects=False,
    )
    assert answer.headers["Location"] == "/"
    for path in ("/", "/board", "/reports"):
        refused = await client.get(path, allow_redirects=False)
        assert refused.status == 302 and refused.headers["Location"] == "/account/second-factor"
    assert (await client.get("/api/teams")).status == 403
    page = await (await client.get("/account/second-factor")).text()
    assert 'id="totp-secret"' in page and "otpauth://totp/" in page


# --- the HTTP listener's deadlines --------------------------------------------------------------


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hallo")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/", echo)
    runner = server.app_runner(app, keepalive_seconds=1.0, header_seconds=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = runner.addresses
    yield int(sockets[0][1])
    await runner.cleanup()


async def closed_after(port: int, send: bytes) -> tuple[float, bytes]:
    """Connect, send `send`, read until the server closes: (seconds, what came back)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(send)
    received = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return time.monotonic() - started, received


async def test_a_silent_connection_and_a_half_sent_request_head_are_closed(listener: int) -> None:
    seconds, received = await closed_after(listener, b"")
    assert received == b"" and 0.3 < seconds < 2.0
    # Trickling the head a byte at a time does not keep it open either.
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    started = time.monotonic()
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
        if reader.at_eof():
            break
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    assert time.monotonic() - started < 2.5
    writer.close()


async def test_a_complete_request_is_answered_and_an_idle_kept_alive_connection_closed(
    listener: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(5) == b"hallo"
    answered = time.monotonic()
    # Kept alive, then closed after the keep-alive time (1 s here), not an hour.
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    assert 0.5 < time.monotonic() - answered < 3.0
    writer.close()


async def test_a_slow_body_after_a_complete_head_is_not_cut_by_the_head_deadline(
    listener: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    for byte in b"abcd":
        await asyncio.sleep(0.3)  # 1.2 s in all: beyond the head's 0.5 s
        writer.write(bytes([byte]))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(4) == b"abcd"
    writer.close()


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert server.raise_open_files_limit() == hard or hard == resource.RLIM_INFINITY
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == server.raise_open_files_limit()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_cli_takes_a_lost_second_factor_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The only admin lost phone and recovery codes: someone on the server resets it."""
    import io
    import os

    from bereik.cli import main

    umask = os.umask(0o022)
    settings = tmp_path / "bereik.toml"
    settings.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "b.db"}"\n')
    cfg = ["--config", str(settings)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "beheer", "--role", "admin", "--password-stdin", *cfg]) == 0

    async def enrol() -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        async with async_sessionmaker(engine)() as db:
            user = (await db.execute(select(User))).scalar_one()
            second_factor.start(user, second_factor.SecretBox.of_instance(tmp_path))
            user.totp_enabled_at = datetime.now(UTC)
            await db.commit()
        await engine.dispose()

    asyncio.run(enrol())
    capsys.readouterr()
    assert main(["users", "list", *cfg]) == 0
    assert "\tsecond factor" in capsys.readouterr().out
    assert main(["users", "reset-second-factor", "beheer", *cfg]) == 0
    assert main(["users", "list", *cfg]) == 0
    assert "no second factor" in capsys.readouterr().out
    assert main(["users", "reset-second-factor", "niemand", *cfg]) != 0
    os.umask(umask)
