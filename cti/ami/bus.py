"""The one consumer of AMI events: hands each event to every subscriber, in order.

Subscribers (the call tracker, click-to-call outcomes, the agent popup) each get every
event. A subscriber that raises is logged and skipped for that event; it never stops the
others or the reading of events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk.message import Message

log = logging.getLogger("bereik.ami.bus")

Subscriber = Callable[[Message], Awaitable[None] | None]


class EventBus:
    def __init__(self, queue: asyncio.Queue[Message]) -> None:
        self.queue = queue
        self.subscribers: list[Subscriber] = []
        self.handled = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            await self.publish(event)

    async def publish(self, event: Message) -> None:
        self.handled += 1
        for subscriber in self.subscribers:
            try:
                result: Any = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "AMI subscriber %s failed on %s", _name(subscriber), event.get("Event", "?")
                )


def _name(subscriber: Subscriber) -> str:
    return getattr(subscriber, "__qualname__", repr(subscriber))
