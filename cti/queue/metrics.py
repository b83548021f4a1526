"""The waiting line's figures on /metrics, per queue ("kcc").

Counters move when a caller's stay in line is decided (the ``queue_calls`` row is updated
from an empty outcome, so a stay is counted once even when events are seen twice). The
gauges are set from the events (callers waiting, longest wait) and from the database
every few seconds (agents per state, today's service level and ASA, the staffing forecast).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from bereik.services import Services
from metrics.registry import WAIT_BUCKETS

_KEY = "queue_metrics"
OVERFLOW_REASONS = ("max_wait", "full", "nobody_signed_in", "closing", "other")
VIRTUAL_HOLD_STAGES = ("offered", "made", "reached")
AGENT_STATES = ("signed_out", "available", "on_call", "wrapup", "paused")


class QueueMetrics:
    def __init__(self, services: Services) -> None:
        r = services.metrics.registry
        self.offered = Counter(
            "bereik_queue_offered",
            "Callers who came to the waiting line (also those turned away at once by an "
            "overflow rule), counted when their stay is decided.",
            ["queue"],
            registry=r,
        )
        self.answered = Counter(
            "bereik_queue_answered", "Callers in line answered by an agent.", ["queue"], registry=r
        )
        self.answered_in_level = Counter(
            "bereik_queue_answered_within_level",
            "Callers answered within the queue's service_level_seconds.",
            ["queue"],
            registry=r,
        )
        self.abandoned = Counter(
            "bereik_queue_abandoned",
            "Callers who hung up while in line; short=true when within short_abandon_seconds "
            "(a wrong number, kept apart from missed callers).",
            ["queue", "short"],
            registry=r,
        )
        self.overflow = Counter(
            "bereik_queue_overflow",
            "Callers sent to the callback offer by an overflow rule, by reason.",
            ["queue", "reason"],
            registry=r,
        )
        self.virtual_hold = Counter(
            "bereik_queue_virtual_hold",
            "Callbacks that keep the caller's place: offered (the caller pressed 1 and "
            "confirmed), made (an agent was rung for it), reached (the citizen answered).",
            ["queue", "stage"],
            registry=r,
        )
        self.wait = Histogram(
            "bereik_queue_wait_seconds",
            "How long an answered caller was in line before an agent answered.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.waiting = Gauge(
            "bereik_queue_callers_waiting", "Callers in line now.", ["queue"], registry=r
        )
        self.longest = Gauge(
            "bereik_queue_longest_wait_seconds",
            "How long the caller who waits longest now has been in line (0: nobody).",
            ["queue"],
            registry=r,
        )
        self.agents = Gauge(
            "bereik_queue_agents",
            "Agents of the queue per state: signed_out, available, on_call, wrapup, paused.",
            ["queue", "state"],
            registry=r,
        )
        self.service_level = Gauge(
            "bereik_queue_service_level_ratio",
            "Today: answered within service_level_seconds / (answered + abandoned after "
            "short_abandon_seconds + overflowed). Absent when no caller counts yet.",
            ["queue"],
            registry=r,
        )
        self.asa = Gauge(
            "bereik_queue_average_answer_seconds",
            "Today: average speed of answer (seconds in line of answered callers).",
            ["queue"],
            registry=r,
        )
        self.agents_needed = Gauge(
            "bereik_queue_agents_needed",
            "Erlang C forecast: agents needed in the next hour to hold the service level "
            "target, from the last hour's arrivals and handling time.",
            ["queue"],
            registry=r,
        )
        for state in AGENT_STATES:
            self.agents.labels("kcc", state).set(0)
        for stage in VIRTUAL_HOLD_STAGES:
            self.virtual_hold.labels("kcc", stage)
        self.offered.labels("kcc")
        self.answered.labels("kcc")
        self.waiting.labels("kcc").set(0)
        self.longest.labels("kcc").set(0)

    def set_agents(self, queue: str, counts: Mapping[str, int]) -> None:
        for state in AGENT_STATES:
            self.agents.labels(queue, state).set(counts.get(state, 0))

    def set_ratio(self, gauge: Gauge, queue: str, value: float | None) -> None:
        if value is None:
            try:
                gauge.remove(queue)
            except KeyError:
                pass
        else:
            gauge.labels(queue).set(value)


def queue_metrics(services: Services) -> QueueMetrics:
    found = services.extras.get(_KEY)
    if found is None:
        found = services.extras[_KEY] = QueueMetrics(services)
    return found  # type: ignore[return-value]
