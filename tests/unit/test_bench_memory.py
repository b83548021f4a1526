"""The memory bench's replay: its first parts hold calls in progress, the rest ends them."""

from __future__ import annotations

from panoramisk.message import Message

from bench.ami_ingest import EOL
from bench.memory import Copies, MemoryRow
from cti.calls.tracker import CallTracker, Ended, Started


def feed(tracker: CallTracker, payload: bytes) -> list[object]:
    effects: list[object] = []
    for block in payload.decode().split(EOL + EOL):
        message = Message.from_line(block.strip())
        if message is not None:
            effects += tracker.feed(message)
    return effects


def test_first_parts_leave_every_call_in_progress_and_the_rest_ends_each_once() -> None:
    copies = Copies()
    tracker = CallTracker("14070", "7000", {"7101": "vergunningen"})
    first, ends = copies.next(3)
    started = [e for e in feed(tracker, first) if isinstance(e, Started)]
    assert len(started) == 3 * copies.calls_per_copy > 0
    assert len({e.uniqueid for e in started}) == len(started)  # each copy's calls are new
    assert len(tracker.calls) == len(started)
    ended = [e for e in feed(tracker, ends) if isinstance(e, Ended)]
    assert sorted(e.uniqueid for e in ended) == sorted(e.uniqueid for e in started)
    assert not tracker.calls


def test_growth_is_per_thousand_calls_over_the_second_half_of_the_batches() -> None:
    row = MemoryRow(calls=4000, rss_kib={"0": 1000, "100": 1100, "500": 1500})
    row.handled = [(1000, 2000), (2000, 2900), (3000, 3000), (4000, 3200)]
    assert row.per_call_in_progress_kib() == 1.0
    assert row.growth_per_1000_kib() == 200.0
    assert "200.0 KiB per 1,000 calls (from 3,000 to 4,000 handled)" in "\n".join(row.lines())
