"""The web edge against a real `bereik serve` (issue 26, item 8): a thousand idle HTTP
connections held open from another address while ten citizens' calls reach the team's
callback through real Asterisk; the second factor set up and used in Chromium, recovery
codes once; the Content-Security-Policy enforced by the browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.browser import axe, chromium, serious
from tests.support.users import PASSWORD

ATTACKER = "127.0.0.2"  # the idle connections come from another loopback address
IDLE = 1000
CITIZENS = [f"06123450{n:02d}" for n in range(10)]
HEAD_SECONDS = 4
TEAM_TOML = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001", "3002"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""
# systemd's default when a unit sets no LimitNOFILE: soft 1024, the hard limit higher.
SYSTEMD_DEFAULT_SOFT = 1024


@contextlib.contextmanager
def soft_open_files(limit: int) -> Iterator[None]:
    """This process's soft limit for a while (a child started meanwhile inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def team(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Carla"),
        Phone("3002", free_port(), "Daan"),
    ]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        teams_toml=TEAM_TOML,
        server_toml=f"http_header_seconds = {HEAD_SECONDS}\nhttp_keepalive_seconds = 4",
    ) as ex:
        ex.start_asterisk()
        # Started as systemd would start it without LimitNOFILE.
        with soft_open_files(SYSTEMD_DEFAULT_SOFT):
            ex.start_serve()
        yield ex


class IdleHolder:
    """Holds `count` connections open that never send a request; one the server closes
    is opened again at once (an attacker keeping the count up)."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.open = 0
        self.closed_by_server: list[float] = []  # seconds each lived
        self.refused = 0
        self._stop = asyncio.Event()

    async def _slot(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(ATTACKER, 0)
                )
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.2)
                continue
            opened = time.monotonic()
            self.open += 1
            try:
                stop = asyncio.ensure_future(self._stop.wait())
                read = asyncio.ensure_future(reader.read())
                done, _ = await asyncio.wait({stop, read}, return_when=asyncio.FIRST_COMPLETED)
                if read in done and not self._stop.is_set():
                    self.closed_by_server.append(time.monotonic() - opened)
                for task in (stop, read):
                    task.cancel()
            finally:
                self.open -= 1
                writer.close()

    async def __aenter__(self) -> IdleHolder:
        self._tasks = [asyncio.create_task(self._slot()) for _ in range(self.count)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_a_thousand_idle_connections_leave_ten_citizens_their_callback(
    team: Exchange,
) -> None:
    # Both members signed out on their own phones: a call to the team goes straight to
    # the callback (the hopper), the path that needs FastAGI to the end.
    results = await asyncio.gather(
        *(team.call("*22", from_phone=m, hold_ms=6000, key_delay_ms=100) for m in ("3001", "3002"))
    )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    team.phone("3001")
    team.phone("3002")
    with soft_open_files(resource.getrlimit(resource.RLIMIT_NOFILE)[1]):  # the attacker's
        async with IdleHolder(team.ports.http, IDLE) as holder:
            await until(lambda: holder.open >= IDLE, timeout=20)
            started = time.monotonic()
            calls = await asyncio.gather(
                *(team.call("7001", caller=number, hold_ms=8000) for number in CITIZENS)
            )
            assert all(c.returncode == 0 for c in calls), [c.stderr for c in calls]
            rows = await until(
                lambda: len(team.rows("SELECT id FROM hoppers")) >= len(CITIZENS) or None,
                timeout=30,
            )
            assert rows
            # The server closed the silent connections at the head deadline, and the
            # holder kept the count up the whole time.
            await until(lambda: len(holder.closed_by_server) >= IDLE, timeout=HEAD_SECONDS + 10)
            print(
                f"{IDLE} idle held; calls done in {time.monotonic() - started:.1f} s; "
                f"{len(holder.closed_by_server)} closed by the server"
            )
    hoppers = team.rows("SELECT caller, reason FROM hoppers ORDER BY caller")
    assert [(h.caller, h.reason) for h in hoppers] == [(n, "nobody_present") for n in CITIZENS]
    lived = sorted(holder.closed_by_server)
    assert HEAD_SECONDS - 1 <= lived[len(lived) // 2] <= HEAD_SECONDS + 3
    assert holder.refused == 0
    assert "Too many open files" not in team.serve_log.read_text()
    # The web still answers a real request afterwards.
    assert '"status"' in team.http_get("/healthz")


# --- the second factor in Chromium -------------------------------------------------------------


async def sign_in_password(browser: Any, ex: Exchange, name: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="nl-NL")
    page = await context.new_page()
    await page.goto(ex.url("/login"))
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_load_state("load")
    return page


async def test_second_factor_set_up_then_a_code_then_a_recovery_code_once_in_chromium(
    web: Exchange,
) -> None:
    async with chromium() as browser:
        page = await sign_in_password(browser, web, "ad")
        # Without a second factor the admin reaches only its set-up.
        assert page.url.endswith("/account/second-factor"), page.url
        await page.goto(web.url("/admin"))
        assert page.url.endswith("/account/second-factor")
        assert not serious(await axe(page))
        secret = await page.get_attribute("#totp-secret", "data-secret")
        assert secret and secret.replace(" ", "") in (
            await page.inner_text("#totp-secret")
        ).replace(" ", "")
        assert "otpauth://totp/" in await page.inner_text("#totp-uri")
        await page.fill("#setup-form input[name=code]", "000000")
        await page.click("#setup-form button[type=submit]")
        await page.wait_for_selector(".flash.err")
        totp = pyotp.TOTP(secret)
        await page.fill("#setup-form input[name=code]", totp.now())
        await page.click("#setup-form button[type=submit]")
        await page.wait_for_selector("#recovery-codes")
        codes = [c.strip() for c in await page.locator("#recovery-codes code").all_inner_texts()]
        assert len(codes) == 10 and len(set(codes)) == 10
        await page.click("#continue")
        await page.wait_for_selector("#users")  # the admin screen, at last
        await page.context.close()

        # Next sign-in: the password, then the code (the next time step's: this one is used).
        page = await sign_in_password(browser, web, "ad")
        assert "/login/code" in page.url
        assert not serious(await axe(page))
        assert await page.query_selector("#users") is None
        await page.fill("input[name=code]", totp.at(time.time() + 30))
        await page.click("#code-form button[type=submit]")
        await page.wait_for_selector("#users")
        await page.context.close()

        # A lost phone: a recovery code works once.
        for attempt in range(2):
            page = await sign_in_password(browser, web, "ad")
            await page.fill("input[name=code]", codes[0])
            await page.click("#code-form button[type=submit]")
            await page.wait_for_load_state("load")
            if attempt == 0:
                await page.wait_for_selector("#users")
            else:
                assert "/login/code" in page.url
                assert "gebruikte code" in await page.inner_text(".flash.err")
            await page.context.close()
    audit = {r.action for r in web.rows("SELECT action FROM audit_log WHERE actor = 'ad'")}
    assert {"second_factor_on", "login_code", "recovery_code_used"} <= audit
    secret_at_rest = web.rows("SELECT totp_secret FROM users WHERE name = 'ad'")[0].totp_secret
    assert secret not in secret_at_rest


async def test_the_browser_runs_no_injected_inline_script_and_no_page_is_framed(
    web: Exchange,
) -> None:
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        answer = await page.goto(web.url("/login?err=<b>weg</b>&msg=Bel+0900"))
        assert answer is not None
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "0900" not in await page.content()
        # A script that found its way into the page (as an XSS would put it) does not run,
        # and the browser reports the refusal.
        ran = await page.evaluate(
            """() => new Promise((resolve) => {
                document.addEventListener("securitypolicyviolation",
                    (e) => resolve("refused " + e.violatedDirective));
                const s = document.createElement("script");
                s.textContent = "window.injected = true";
                document.body.append(s);
                setTimeout(() => resolve(window.injected ? "ran" : "silent"), 2000);
            })"""
        )
        assert ran.startswith("refused script-src"), ran
        # The screen's own scripts still work: the texts reached bereik.js.
        assert await page.evaluate("window.bereik.t('sign in')") == "Inloggen"
        # Put in a frame by another page, the browser shows nothing of it.
        framing = await context.new_page()
        # set_content returns once the page and its frame have loaded (or failed to).
        await framing.set_content(f'<iframe id="f" src="{web.url("/login")}"></iframe>')
        frame = framing.frame(url=re.compile(r".*/login"))
        content = await frame.content() if frame is not None else ""
        assert "login-form" not in content
        await context.close()
