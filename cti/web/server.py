"""The HTTP listener of `bereik serve`: how long a connection may sit idle or half-sent.

Every open connection holds a file descriptor of the one process that also accepts
Asterisk's FastAGI sessions. aiohttp on its own keeps an idle connection for an hour and
has no deadline for a request's headers, so a thousand silent or trickling connections
(a careless monitor, or someone holding sockets on purpose) would keep their
descriptors and starve FastAGI of sockets. Here:

- a kept-alive connection between requests is closed after `http_keepalive_seconds`;
- a connection gets `http_header_seconds` to deliver a complete request head: from its
  opening, and from the first byte of each next request on it. A body then streams at
  its own pace (uploads of recordings are large), bounded by `client_max_size`.

And the process's soft limit on open files is raised to its hard limit at start (systemd
gives 1024 soft unless `LimitNOFILE` says otherwise; deploy/systemd sets it).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


class _GuardedHandler(RequestHandler):  # type: ignore[type-arg]
    """aiohttp's per-connection protocol with a deadline for a request's head."""

    def __init__(self, *args: Any, header_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_seconds = header_seconds
        self._header_timer: asyncio.TimerHandle | None = None
        self._requests_at_arm = 0

    def _arm(self) -> None:
        self._requests_at_arm = self._request_count
        self._header_timer = self._loop.call_later(self._header_seconds, self._header_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self._request_count == self._requests_at_arm:
            # No complete request head in time: the descriptor goes back to the process.
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # Waiting for a next request (not inside one's body): its first byte starts the clock.
        waiting = self._waiter is not None and not self._waiter.done()
        if data and self._header_timer is None and waiting and not self._messages:
            self._arm()
        super().data_received(data)
        if self._request_count != self._requests_at_arm:
            self._disarm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    """aiohttp's protocol factory, making `_GuardedHandler`s."""

    def __call__(self) -> RequestHandler:  # type: ignore[type-arg]
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application builds aiohttp's Server (with its request factory and the
        # handler arguments); only its protocol class changes.
        server.__class__ = _GuardedServer
        return server


def app_runner(
    app: web.Application, keepalive_seconds: float, header_seconds: float
) -> web.AppRunner:
    """The runner `bereik serve` starts its HTTP site with (see the module's docstring)."""
    raise_open_files_limit()
    return GuardedAppRunner(
        app, access_log=None, keepalive_timeout=keepalive_seconds, header_seconds=header_seconds
    )


def raise_open_files_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays %s (%s)", soft, exc)
        return soft
    return target
