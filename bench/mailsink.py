"""A mail server that accepts and drops every message, on the port the bench config names.

Without one, `bereik serve`'s outbox retries every mail (hopper notices, reminders for the
open hoppers of the data set) against a closed port, and the bench measures that loop
instead of the calls. It runs in the bench's own process, so its CPU is not counted.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.controller import Controller


class _Drop:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


class MailSink:
    def __init__(self, port: int) -> None:
        self.handler = _Drop()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def received(self) -> int:
        return self.handler.received
