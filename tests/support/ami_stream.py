"""A recorded AMI stream (tests/e2e/data/ami_stream.txt) replayed through a call tracker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from panoramisk.message import Message

from cti.calls.tracker import CallTracker, Effect

STREAM = Path(__file__).resolve().parents[1] / "e2e" / "data" / "ami_stream.txt"


BANNER = "Asterisk Call Manager/"


def tracker() -> CallTracker:
    return CallTracker("14070", "7000", {"7101": "vergunningen"}, clock=lambda: 0.0)


def blocks(raw: str) -> Iterator[Message | str]:
    """Messages of a raw AMI stream; a banner (a new connection) is yielded as itself."""
    for block in raw.split("\r\n\r\n"):
        block = block.strip()
        if block.startswith(BANNER):
            yield BANNER
            block = block.partition("\r\n")[2]
        message = Message.from_line(block) if block else None
        if message is not None and "Event" in message:
            yield message


def replay(raw: str, t: CallTracker | None = None) -> tuple[CallTracker, list[Effect]]:
    """Feed a stream; on a reconnect, resync from no live channels (Asterisk restarted)."""
    t = t or tracker()
    effects: list[Effect] = []
    connections = 0
    for item in blocks(raw):
        if isinstance(item, str):
            connections += 1
            if connections > 1:
                effects += t.resync([])
            continue
        effects += t.feed(item)
    return t, effects
