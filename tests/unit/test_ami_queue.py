"""The AMI client's bounded event queue: when full, the oldest event goes and is counted."""

from __future__ import annotations

import logging

import pytest
from panoramisk.message import Message

from cti.ami.client import AmiClient
from metrics.registry import BereikMetrics


async def test_a_full_queue_drops_the_oldest_and_counts_each_drop_on_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = BereikMetrics(teams=[])
    client = AmiClient("127.0.0.1", 1, "bereik", "secret", queue_size=3)
    client.on_dropped.append(metrics.ami_event_dropped)
    with caplog.at_level(logging.WARNING, logger="bereik.ami"):
        for number in range(10):
            # What panoramisk's dispatch hands the client for each event it reads.
            client._enqueue(Message({"Event": "UserEvent", "Number": str(number)}))
    kept = [client.events.get_nowait()["Number"] for _ in range(client.events.qsize())]
    assert kept == ["7", "8", "9"]  # the newest survive; the reader never blocked
    assert metrics.registry.get_sample_value("bereik_ami_events_dropped_total") == 7
    assert client.dropped_events == 7
    # One line at the first drop, not one per event.
    assert caplog.text.count("AMI event queue full (3 events)") == 1
