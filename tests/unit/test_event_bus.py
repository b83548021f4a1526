"""The AMI event bus: a part that raises on an event is counted by name and skipped for
that event; the other parts still get it, and the next event reaches every part."""

from __future__ import annotations

import asyncio

from panoramisk.message import Message

from cti.ami.bus import EventBus
from metrics.registry import BereikMetrics


def event(name: str) -> Message:
    return Message({"Event": name})


class Tracker:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_event(self, message: Message) -> None:
        self.seen.append(str(message["Event"]))


class Broken:
    def on_event(self, message: Message) -> None:
        if message["Event"] == "Hangup":
            raise KeyError("Cause")


def test_a_part_that_raises_is_counted_by_name_and_the_others_get_every_event() -> None:
    metrics = BereikMetrics(teams=[], handlers=[])
    bus = EventBus(
        asyncio.Queue(),
        on_failure=metrics.ami_event_failed,
        on_subscribe=metrics.init_ami_subscriber,
    )
    broken, tracker = Broken(), Tracker()
    bus.subscribe(broken.on_event)
    bus.subscribe(tracker.on_event)

    def failures(subscriber: str) -> float | None:
        return metrics.registry.get_sample_value(
            "bereik_ami_event_failures_total", {"subscriber": subscriber}
        )

    # Each part's count is there at 0 before any event (so the first failure shows).
    assert failures("Broken.on_event") == 0.0 and failures("Tracker.on_event") == 0.0

    async def run() -> None:
        for name in ("Newchannel", "Hangup", "Newchannel"):
            await bus.publish(event(name))

    asyncio.run(run())
    assert tracker.seen == ["Newchannel", "Hangup", "Newchannel"]
    assert failures("Broken.on_event") == 1.0 and failures("Tracker.on_event") == 0.0
