"""Sign-in through the screens' form on an in-process aiohttp test client (unit tests)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

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
    return await client.post(
        "/login",
        data={"name": name, "password": password, "login_token": token, "next": next_},
        allow_redirects=False,
    )
