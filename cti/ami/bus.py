"""The one consumer of AMI events: hands each event to every subscriber, in order.

Subscribers (the call tracker, click-to-call outcomes, the agent popup) each get every
event they read. A subscriber declares the events it reads (`subscribe(..., events=...)`,
or `@reads(...)` on its function); one that declares nothing gets every event. The bus
hands an event only to the subscribers that read it, and tells the AMI client (through
the queue they share, `EventQueue.wanted`) which events anyone reads at all: the client
skips the others from their first line, without building them (cti/ami/client.py).

A subscriber that raises is logged and skipped for that event, and counted
(`on_failure`: bereik_ami_event_failures_total and its alert), so a bug that costs events is
seen, not only logged; it never stops the others or the reading of events. What a
subscriber writes to the store waits out a store fault by the store's own policy
(cti/store/faults.py): what reaches this guard is a fault of the code, not the database.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from panoramisk.message import Message

log = logging.getLogger("bereik.ami.bus")

Subscriber = Callable[[Message], Awaitable[None] | None]
F = TypeVar("F", bound=Callable[..., Any])

# The attribute `reads` sets on a subscriber's function (a bound method passes it on).
_READS = "ami_events"


def reads(*events: str) -> Callable[[F], F]:
    """Declare the AMI events (their `Event:` names) a subscriber reads: the bus hands it
    only those, and the client need not build an event that no subscriber reads."""

    def declare(subscriber: F) -> F:
        setattr(subscriber, _READS, frozenset(events))
        return subscriber

    return declare


class EventQueue(asyncio.Queue[Message]):
    """The AMI client's events on their way to the bus. `wanted` is the set of event names
    the bus's subscribers read, None while one of them reads every event (or before the
    bus has said): the client builds and queues only those events (and always the ones an
    action or the connection itself needs, see cti/ami/client.py)."""

    wanted: frozenset[str] | None = None


class EventBus:
    def __init__(
        self,
        queue: asyncio.Queue[Message],
        on_failure: Callable[[str], None] | None = None,
        on_subscribe: Callable[[str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.subscribers: list[Subscriber] = []
        # What each subscriber reads, by its place in `subscribers` (None: every event).
        self._reads: list[frozenset[str] | None] = []
        # The subscribers of each event name seen, in subscription order (made on the
        # first such event: the bus runs for every event, a list look-up is what it costs).
        self._routes: dict[str, list[Subscriber]] = {}
        self.handled = 0
        self.on_failure = on_failure
        # Each part's failure count exists at 0 from its subscription on: Prometheus'
        # increase() cannot see a counter's first failure if its series starts at 1.
        self.on_subscribe = on_subscribe
        self._tell_queue()

    def subscribe(self, subscriber: Subscriber, events: Iterable[str] | None = None) -> None:
        """`subscriber` gets the events named in `events`, or those its `@reads` declares,
        or (neither given) every event."""
        declared = getattr(subscriber, _READS, None) if events is None else frozenset(events)
        self.subscribers.append(subscriber)
        self._reads.append(declared)
        self._routes.clear()
        self._tell_queue()
        if self.on_subscribe is not None:
            self.on_subscribe(_name(subscriber))

    @property
    def wanted(self) -> frozenset[str] | None:
        """The event names any subscriber reads; None when one reads every event."""
        names: set[str] = set()
        for declared in self._reads:
            if declared is None:
                return None
            names |= declared
        return frozenset(names)

    def _tell_queue(self) -> None:
        if isinstance(self.queue, EventQueue):
            self.queue.wanted = self.wanted

    def _subscribers_of(self, name: str) -> list[Subscriber]:
        route = self._routes.get(name)
        if route is None:
            route = [
                subscriber
                for subscriber, declared in zip(self.subscribers, self._reads, strict=True)
                if declared is None or name in declared
            ]
            self._routes[name] = route
        return route

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            rest = self._hand_out(event)
            if rest is not None:
                await rest

    async def publish(self, event: Message) -> None:
        rest = self._hand_out(event)
        if rest is not None:
            await rest

    def _hand_out(self, event: Message) -> Awaitable[None] | None:
        """Hand `event` to its subscribers in order; None when all are done. The bus runs
        for every event, and its subscribers are mostly plain functions: they are called
        here, without a coroutine per event. At the first one that returns an awaitable,
        what is left (awaiting it, then the subscribers after it) is returned as one
        coroutine for the caller to await, so each still gets the event in turn."""
        self.handled += 1
        name = event.get("Event", "")
        # A name that is no string (a repeated header) goes to those that read every event.
        route = self._subscribers_of(name if isinstance(name, str) else "")
        for place, subscriber in enumerate(route):
            try:
                result: Any = subscriber(event)
            except Exception:
                self._failed(subscriber, event)
                continue
            # A plain function returns None: the costlier check is for the others.
            if result is not None and inspect.isawaitable(result):
                return self._finish(event, route, place, result)
        return None

    async def _finish(
        self, event: Message, route: list[Subscriber], place: int, result: Awaitable[Any]
    ) -> None:
        # `result` is route[place]'s, already called; the ones after it are called here.
        pending: Awaitable[Any] | None = result
        for subscriber in route[place:]:
            try:
                if pending is None:
                    returned: Any = subscriber(event)
                    if returned is not None and inspect.isawaitable(returned):
                        pending = returned
                if pending is not None:
                    await pending
            except Exception:
                self._failed(subscriber, event)
            pending = None

    def _failed(self, subscriber: Subscriber, event: Message) -> None:
        log.exception("AMI subscriber %s failed on %s", _name(subscriber), event.get("Event", "?"))
        if self.on_failure is not None:
            self.on_failure(_name(subscriber))


def _name(subscriber: Subscriber) -> str:
    return getattr(subscriber, "__qualname__", repr(subscriber))
