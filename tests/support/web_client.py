"""Sign-in through the screens' form on an in-process aiohttp test client (unit tests)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support import second_factor

PASSWORD = "geheim-wachtwoord"


Client = TestClient[web.Request, web.Application]


async def login_token(client: Client) -> str:
    page = await (await client.get("/login")).text()
    found = re.search(r'name="login_token" value="([^"]+)"', page)
    assert found
    return found[1]


async def post_login(
    client: Client, token: str, password: str = PASSWORD, name: str = "marieke", next_: str = "/"
) -> Any:
    """POST /login; for an admin or supervisor also the second factor (set up on the first
    sign-in, the code on later ones): the answer is then the code step's."""
    response = await client.post(
        "/login",
        data={"name": name, "password": password, "login_token": token, "next": next_},
        allow_redirects=False,
    )
    location = response.headers.get("Location", "")
    if response.status != 303 or location.startswith("/login?"):
        return response
    key = f"{client.make_url('')}|{name}"
    if location.startswith("/login/code"):
        return await second_factor.answer_code(client, str, key, location)
    await second_factor.set_up(client, str, key, location)
    return response
