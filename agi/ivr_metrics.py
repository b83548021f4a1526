"""What callers choose in the 14070 menu, as Prometheus counters.

Why: nobody knew what callers ask; the share of each menu key (and of wrong keys and
silence) shows whether the menu and the website's channel steering work, on facts.
Registered on the process's BereikMetrics registry, so /metrics serves them.
"""

from __future__ import annotations

from prometheus_client import Counter

from cti.services import Services

_KEY = "ivr_metrics"


class IvrMetrics:
    def __init__(self, services: Services) -> None:
        registry = services.metrics.registry
        self.choices = Counter(
            "bereik_ivr_choices",
            "Menu choices on 14070: path is the key path (1, 3.1; 'none' for no key, "
            "'invalid' for a wrong key), destination where it led (team id, kcc, info, "
            "submenu, or retry).",
            ["path", "destination"],
            registry=registry,
        )
        self.closed = Counter(
            "bereik_ivr_closed_calls",
            "Calls to 14070 outside opening hours, by what the caller did: callback "
            "(left a request), repeat (already had one), none (heard the hours only).",
            ["action"],
            registry=registry,
        )
        self.announcements = Counter(
            "bereik_announcements_played",
            "Announcements played to callers (to the end or cut short by a key), by kind.",
            ["scope_kind"],
            registry=registry,
        )


def ivr_metrics(services: Services) -> IvrMetrics:
    found = services.extras.get(_KEY)
    if found is None:
        found = services.extras[_KEY] = IvrMetrics(services)
    return found  # type: ignore[return-value]
