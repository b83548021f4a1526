"""The one consumer of AMI events: hands each event to every subscriber, in order.

Subscribers (the call tracker, click-to-call outcomes, the agent popup) each get every
event. A subscriber that raises is logged and skipped for that event, and counted
(`on_failure`: bereik_ami_event_failures_total and its alert), so a bug that costs events is
seen, not only logged; it never stops the others or the reading of events. What a
subscriber writes to the store waits out a store fault by the store's own policy
(cti/store/faults.py): what reaches this guard is a fault of the code, not the database.
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
    def __init__(
        self,
        queue: asyncio.Queue[Message],
        on_failure: Callable[[str], None] | None = None,
        on_subscribe: Callable[[str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.subscribers: list[Subscriber] = []
        self.handled = 0
        self.on_failure = on_failure
        # Each part's failure count exists at 0 from its subscription on: Prometheus'
        # increase() cannot see a counter's first failure if its series starts at 1.
        self.on_subscribe = on_subscribe

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)
        if self.on_subscribe is not None:
            self.on_subscribe(_name(subscriber))

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
                if self.on_failure is not None:
                    self.on_failure(_name(subscriber))


def _name(subscriber: Subscriber) -> str:
    return getattr(subscriber, "__qualname__", repr(subscriber))
