"""The event bus hands each event to its parts in subscription order, plain functions and
coroutines mixed, without a coroutine of its own per event: a part that awaits is finished
before the next part gets the event, and a part that fails (at once or while awaited) is
counted and skipped for that event only."""

from __future__ import annotations

import asyncio

from panoramisk.message import Message

from cti.ami.bus import EventBus, EventQueue


def test_parts_get_each_event_in_order_whether_they_await_or_not_and_failures_are_counted() -> None:
    seen: list[str] = []
    failed: list[str] = []

    def first(event: Message) -> None:
        seen.append(f"first {event['Event']}")

    async def waits(event: Message) -> None:
        await asyncio.sleep(0)
        seen.append(f"waits {event['Event']}")
        if event["Event"] == "Hangup":
            raise KeyError("Cause")

    def breaks(event: Message) -> None:
        if event["Event"] == "Newchannel":
            raise ValueError("no channel")
        seen.append(f"breaks {event['Event']}")

    def last(event: Message) -> None:
        seen.append(f"last {event['Event']}")

    queue = EventQueue()
    bus = EventBus(queue, on_failure=failed.append)
    for part in (first, waits, breaks, last):
        bus.subscribe(part)

    async def run() -> None:
        for name in ("Newchannel", "Hangup"):
            queue.put_nowait(Message({"Event": name}))
        task = asyncio.create_task(bus.run())
        while len(seen) < 7:  # noqa: ASYNC110  (each turn of the loop lets the bus run)
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 5))
    assert seen == [
        "first Newchannel",
        "waits Newchannel",
        "last Newchannel",
        "first Hangup",
        "waits Hangup",
        "breaks Hangup",
        "last Hangup",
    ]
    # Counted by the part's name: the one that failed at once, then the one that failed
    # while awaited.
    assert [name.rsplit(".", 1)[-1] for name in failed] == ["breaks", "waits"]
    assert bus.handled == 2
