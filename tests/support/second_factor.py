"""The second factor in the tests' sign-ins, done as a person does it: an admin or
supervisor without one sets it up from the page (the secret shown there, a code from
it); one with it answers the code step. The secrets live in this test process only."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp

SETUP = "/account/second-factor"
_secrets: dict[str, str] = {}
_last_step: dict[str, int] = {}


def remember(key: str, secret: str) -> None:
    _secrets[key] = secret
    _last_step.pop(key, None)


def secret_of(key: str) -> str:
    return _secrets[key]


async def code(key: str) -> str:
    """A code not used before for this account: the exchange accepts each time step once
    (and the next step's code a little early), so a quick second sign-in uses the next."""
    secret = _secrets[key]
    while True:
        now = int(time.time() // 30)
        step = max(now, _last_step.get(key, 0) + 1)
        if step <= now + 1:
            _last_step[key] = step
            return pyotp.TOTP(secret).at(step * 30)
        await asyncio.sleep(1)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, page[:500]
    return found[1]


async def answer_code(http: Any, url: Callable[[str], str], key: str, location: str) -> Any:
    """POST /login led to the code step (`location`): the code posted; its answer."""
    target = parse_qs(urlsplit(location).query).get("next", ["/"])[0]
    page = await (await http.get(url(location))).text()
    return await http.post(
        url("/login/code"),
        data={"code": await code(key), "csrf_token": _csrf(page), "next": target},
        allow_redirects=False,
    )


async def set_up(http: Any, url: Callable[[str], str], key: str, location: str) -> None:
    """Signed in without a second factor: if the exchange sends this account to set one
    up, done from the page (the secret it shows, a code from it)."""
    first = await http.get(url(location), allow_redirects=False)
    if first.status != 302 or first.headers.get("Location") != SETUP:
        return
    page = await (await http.get(url(SETUP))).text()
    found = re.search(r'data-secret="([A-Z2-7]+)"', page)
    assert found, page[:500]
    remember(key, found[1])
    done = await http.post(
        url(SETUP), data={"code": await code(key), "csrf_token": _csrf(page)}, allow_redirects=False
    )
    assert done.status == 200 and 'id="recovery-codes"' in await done.text()


async def over_http(http: Any, url: Callable[[str], str], key: str, location: str) -> str:
    """After POST /login redirected to `location`: the code step answered, or the factor
    set up; returns where the browser goes next (the sign-in's target)."""
    if location.startswith("/login/code"):
        answered = await answer_code(http, url, key, location)
        assert answered.status == 303, await answered.text()
        location = answered.headers["Location"]
        assert not location.startswith("/login"), location
        return str(location)
    await set_up(http, url, key, location)
    return location


async def in_browser(page: Any, key: str) -> None:
    """The same in Chromium, on the page the sign-in form led to."""
    if "/login/code" in page.url:
        await page.fill("input[name=code]", await code(key))
        await page.click("#code-form button[type=submit]")
        await page.wait_for_load_state("load")
    if page.url.rstrip("/").endswith(SETUP):
        secret = await page.get_attribute("#totp-secret", "data-secret")
        assert secret
        remember(key, secret)
        await page.fill("#setup-form input[name=code]", await code(key))
        await page.click("#setup-form button[type=submit]")
        await page.wait_for_selector("#recovery-codes")
        await page.click("#continue")
        await page.wait_for_load_state("load")
