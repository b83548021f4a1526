"""The FastAGI server's hooks fed into the metrics registry (metrics/registry.py).

Here, not in metrics/, so the registry imports nothing of ours: agi sits above metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agi.server import AgiObserver
from metrics.registry import UNKNOWN_HANDLER, BereikMetrics


class AgiMetricsObserver(AgiObserver):
    """Feeds the FastAGI server's hooks into ``BereikMetrics``.

    The server reports a failure for a script name it has no handler for, and that name
    comes from the network; names outside the configured routes are recorded as "unknown"
    so a scanner or misconfigured dialplan cannot create series at will.
    """

    def __init__(self, metrics: BereikMetrics, handlers: Iterable[str] = ()) -> None:
        self.metrics = metrics
        metrics.init_handlers(handlers)
        # Each handler's series, looked up once: `labels()` on every call was a tenth of
        # the FastAGI server's own Python time (bench --profile).
        self._requests: dict[str, Any] = {}

    def _label(self, handler: str) -> str:
        return handler if handler in self.metrics.handlers else UNKNOWN_HANDLER

    def command(self, seconds: float) -> None:
        self.metrics.agi_command_seconds.observe(seconds)

    def handled(self, handler: str, seconds: float) -> None:
        series = self._requests.get(handler)
        if series is None:
            series = self.metrics.agi_requests.labels(handler=self._label(handler))
            if handler in self.metrics.handlers:  # a name from the network is not kept
                self._requests[handler] = series
        series.inc()

    def failed(self, handler: str) -> None:
        label = self._label(handler)
        # A failure is also a request, so failures / requests is the failure ratio.
        self.metrics.agi_requests.labels(handler=label).inc()
        self.metrics.agi_failures.labels(handler=label).inc()

    def refused(self, reason: str) -> None:
        self.metrics.agi_refused.labels(reason).inc()
