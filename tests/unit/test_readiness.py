"""GET /readyz as a balancer sees it (bereik/readiness.py), on a real aiohttp server."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bereik.readiness import Readiness


async def client_of(readiness: Readiness) -> TestClient:
    app = web.Application()
    readiness.setup(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_readyz_answers_200_while_serving_and_503_once_stopping() -> None:
    readiness = Readiness(fall=2)
    client = await client_of(readiness)
    try:
        assert (await client.get("/readyz")).status == 200
        readiness.leave()
        assert (await client.get("/readyz")).status == 503
    finally:
        await client.close()


async def test_a_stop_waits_until_the_balancer_has_seen_fall_refusals() -> None:
    readiness = Readiness(fall=2)
    client = await client_of(readiness)
    try:
        await client.get("/readyz")  # the balancer checks before the stop
        assert readiness.leave() == {"127.0.0.1"}
        waiting = asyncio.create_task(readiness.left(timeout=10))
        await client.get("/readyz")
        await asyncio.sleep(0)
        assert not waiting.done()  # one refusal: HAProxy still sends sessions
        await client.get("/readyz")
        assert await asyncio.wait_for(waiting, 5) == set()
    finally:
        await client.close()


async def test_a_stop_nobody_checks_does_not_wait() -> None:
    readiness = Readiness(fall=2)
    assert readiness.leave() == set()
    assert await asyncio.wait_for(readiness.left(timeout=10), 1) == set()


async def test_a_balancer_that_stops_checking_is_waited_for_no_longer_than_the_timeout() -> None:
    readiness = Readiness(fall=2)
    client = await client_of(readiness)
    try:
        await client.get("/readyz")
        readiness.leave()
        assert await readiness.left(timeout=0.2) == {"127.0.0.1"}
    finally:
        await client.close()
