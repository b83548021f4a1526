"""The bench's verdict on the real ivr handler: its CPU per call against the bare handler's."""

from __future__ import annotations

from bench.report import Row, verdict


def test_the_ivr_handler_is_judged_on_its_cpu_less_idle_against_twice_the_bare_handler() -> None:
    rows = [
        Row("bare FastAGI", 20.0, agi_ms=1.2),
        Row("Bereik ivr", 20.0, agi_ms=5.2, agi_net_ms=2.4),
        Row("bare FastAGI", 50.0, agi_ms=1.2),
        Row("Bereik ivr", 50.0, agi_ms=4.3, agi_net_ms=3.3),
    ]
    lines = verdict(rows, [])
    assert (
        "- 20/s: Bereik ivr CPU 2.40 ms/call less idle (5.20 with it) = 2.0 × bare (met: ≤ 2 ×)"
        in lines
    )
    assert (
        "- 50/s: Bereik ivr CPU 3.30 ms/call less idle (4.30 with it) = 2.8 × bare (MISSED: ≤ 2 ×)"
        in lines
    )
