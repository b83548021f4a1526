"""Readiness: whether this `bereik serve` takes new FastAGI sessions, for a load balancer.

`GET /readyz` answers 200 while the process serves and 503 from the moment it is asked to
stop. It is not `/healthz`: that one is the operator's view and answers 503 when a part
such as the database or SMTP is down, which is true of every process at once; a balancer
that took processes out for it would leave none. Readiness is false only while stopping.

Why a stop waits for the balancer: HAProxy (deploy/haproxy/bereik-fastagi.cfg) passes a
FastAGI connection to a process it believes up. A process that closed its listening socket
at once would reset the connections still in its kernel backlog, which HAProxy had
already counted as made and cannot retry: those callers took the dialplan's fallback. So
a stopping process first answers 503 until every balancer that checks it has seen that
`fall` times (HAProxy's `fall`: then it sends no new session), keeps serving every
session that still reaches it meanwhile, and only then closes its socket and drains.

A process nobody checks (one `bereik serve`, no balancer) does not wait: a balancer
counts only if it asked within `window` seconds before the stop.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web


class Readiness:
    def __init__(self, fall: int = 2, window: float = 10.0) -> None:
        self.fall = fall
        self.window = window
        self.stopping = False
        # Per balancer (the checking peer's address): when it last asked, and how many
        # 503s it has had since the stop.
        self._asked: dict[str, float] = {}
        self._refused: dict[str, int] = {}
        self._balancers: set[str] = set()
        self._answered = asyncio.Event()

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/readyz", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.remote or "-"
        self._asked[peer] = time.monotonic()
        if not self.stopping:
            return web.Response(text="ready\n")
        self._refused[peer] = self._refused.get(peer, 0) + 1
        self._answered.set()
        return web.Response(status=503, text="stopping\n")

    def leave(self) -> set[str]:
        """From now on /readyz answers 503; the balancers that must see it, by address."""
        self.stopping = True
        now = time.monotonic()
        self._balancers = {peer for peer, at in self._asked.items() if now - at <= self.window}
        return set(self._balancers)

    def waiting_for(self) -> set[str]:
        """The balancers that have not yet seen `fall` refusals."""
        return {peer for peer in self._balancers if self._refused.get(peer, 0) < self.fall}

    async def left(self, timeout: float) -> set[str]:
        """Wait until every balancer has taken this process out (seen `fall` refusals), at
        most `timeout` s; the balancers still waited for (empty when all have)."""
        deadline = time.monotonic() + timeout
        while self.waiting_for():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._answered.clear()
            try:
                await asyncio.wait_for(self._answered.wait(), remaining)
            except TimeoutError:
                break
        return self.waiting_for()
