"""Bereik's HTTP API as a client sees it: JSON with a bearer token, and the health check."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.exchange import Exchange


async def api(
    ex: Exchange, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, ex.url(path), json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()


async def ami_connected(ex: Exchange, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ex.health()[1]["ami"] == "connected":  # /healthz answers 503 while it is not
            return
        await asyncio.sleep(0.2)
    raise AssertionError("bereik serve did not connect to AMI")
