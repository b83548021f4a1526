"""The FastAGI server's requests as counted on /metrics, call after call."""

from __future__ import annotations

from agi.observer import AgiMetricsObserver
from metrics.registry import BereikMetrics


def requests(metrics: BereikMetrics, handler: str) -> float:
    value = metrics.registry.get_sample_value("bereik_agi_requests_total", {"handler": handler})
    return value or 0.0


def test_every_handled_call_counts_and_a_name_from_the_network_only_as_unknown() -> None:
    metrics = BereikMetrics()
    observer = AgiMetricsObserver(metrics, ["ivr"])
    for _ in range(3):
        observer.handled("ivr", 0.01)
    observer.handled("/cgi-bin/scan", 0.01)
    observer.handled("/cgi-bin/other", 0.01)
    assert requests(metrics, "ivr") == 3
    assert requests(metrics, "unknown") == 2
    assert (
        metrics.registry.get_sample_value("bereik_agi_requests_total", {"handler": "/cgi-bin/scan"})
        is None
    )
