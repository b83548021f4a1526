"""A full AMI event queue: each dropped event is counted on /metrics and the alert fires.

`bereik serve` runs with a small event queue (`asterisk.ami_event_queue`); a second AMI
login makes Asterisk send a burst of user events, more than the queue holds while the
subscribers work. A real Prometheus with the repository's rules scrapes serve every second:
`bereik_ami_events_dropped_total` must rise from 0 and `BereikAmiEventsDropped` must fire.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, exchange, until
from cti.ami.client import AmiClient
from dialplan import asterisk
from dialplan.render import load_secrets
from tests.support.prometheus import Prometheus

QUEUE = 5
BURST = 3000
DROPPED = re.compile(r"^bereik_ami_events_dropped_total (\S+)$", re.M)


@pytest.fixture
async def small_queue(
    installation: asterisk.Installation, tmp_path: Path
) -> AsyncIterator[tuple[Exchange, Prometheus]]:
    with exchange(installation, tmp_path) as ex:
        toml = ex.config_path.read_text()
        ex.config_path.write_text(
            toml.replace("[asterisk]\n", f"[asterisk]\nami_event_queue = {QUEUE}\n", 1)
        )
        ex.start_asterisk()
        ex.start_serve()
        prometheus = Prometheus(tmp_path, ex.ports.http)
        try:
            prometheus.wait_ready()
            yield ex, prometheus
        finally:
            prometheus.close()


def dropped_on_metrics(ex: Exchange) -> float:
    found = DROPPED.search(ex.http_get("/metrics"))
    assert found, "bereik_ami_events_dropped_total missing from /metrics"
    return float(found.group(1))


async def test_a_full_ami_event_queue_counts_each_drop_on_metrics_and_fires_the_alert(
    small_queue: tuple[Exchange, Prometheus],
) -> None:
    ex, prom = small_queue
    await prom.until('bereik_ami_connected{job="bereik"}', 1)
    # Prometheus has scraped the counter at 0 before the burst (increase() needs that).
    await prom.until('bereik_ami_events_dropped_total{job="bereik"}', 0)
    assert dropped_on_metrics(ex) == 0
    assert not prom.query('ALERTS{alertname="BereikAmiEventsDropped"}')

    secret = load_secrets(ex.host_instance / "secrets.json", ex.config).ami
    burst = AmiClient("127.0.0.1", ex.ports.ami, ex.config.asterisk.ami_user, secret)
    burst.start()
    try:
        await burst.wait_connected(10)
        # All actions written at once: Asterisk answers each with a UserEvent to every AMI
        # login with `user` read rights, serve's among them.
        action = {"Action": "UserEvent", "UserEvent": "BereikBurst"}
        answers = await asyncio.gather(*(burst.action(action, timeout=60) for _ in range(BURST)))
        assert all(answer.success for answer in answers)
    finally:
        await burst.close()

    dropped = await until(lambda: dropped_on_metrics(ex), timeout=10)
    assert 0 < dropped < BURST, dropped
    log = ex.serve_log.read_text()
    assert f"AMI event queue full ({QUEUE} events)" in log, log[-3000:]

    firing = 'ALERTS{alertname="BereikAmiEventsDropped",alertstate="firing"}'
    await prom.until(firing, 1, timeout=30)
    # serve kept reading events after the burst: it is still connected.
    assert prom.value('bereik_ami_connected{job="bereik"}') == 1
