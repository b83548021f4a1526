"""BereikMetrics: the contract names, pre-created series, bounded labels, the AGI observer."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agi.observer import AgiMetricsObserver
from agi.server import AgiObserver
from metrics.registry import NORM_WINDOWS, WAIT_BUCKETS, BereikMetrics

CONTRACT = {
    "bereik_calls_offered": ("counter", {"entry"}),
    "bereik_calls_answered": ("counter", {"team"}),
    "bereik_calls_abandoned": ("counter", {"team"}),
    "bereik_transfers": ("counter", {"to_team", "result"}),
    "bereik_hoppers_created": ("counter", {"team", "reason"}),
    "bereik_callbacks": ("counter", {"team", "within_norm"}),
    "bereik_calls_waiting": ("gauge", {"team"}),
    "bereik_wait_seconds": ("histogram", {"team"}),
    "bereik_hoppers_open": ("gauge", {"team"}),
    "bereik_hoppers_overdue": ("gauge", {"team"}),
    "bereik_ami_connected": ("gauge", set()),
    "bereik_service_norm_ratio": ("gauge", {"team", "window"}),
    "bereik_agi_requests": ("counter", {"handler"}),
    "bereik_agi_failures": ("counter", {"handler"}),
    "bereik_agi_command_seconds": ("histogram", set()),
    "bereik_agi_refused": ("counter", {"reason"}),
    "bereik_ami_events_dropped": ("counter", set()),
    "bereik_ami_event_failures": ("counter", {"subscriber"}),
    "bereik_recording_pin_lockouts": ("counter", set()),
    "bereik_login_lockouts": ("counter", set()),
    "bereik_ivr_choices": ("counter", {"path", "destination"}),
    "bereik_ivr_closed_calls": ("counter", {"action"}),
    "bereik_announcements_played": ("counter", {"scope_kind"}),
    "bereik_queue_offered": ("counter", {"queue"}),
    "bereik_queue_answered": ("counter", {"queue"}),
    "bereik_queue_answered_within_level": ("counter", {"queue"}),
    "bereik_queue_abandoned": ("counter", {"queue", "short"}),
    "bereik_queue_overflow": ("counter", {"queue", "reason"}),
    "bereik_queue_virtual_hold": ("counter", {"queue", "stage"}),
    "bereik_queue_wait_seconds": ("histogram", {"queue"}),
    "bereik_queue_callers_waiting": ("gauge", {"queue"}),
    "bereik_queue_longest_wait_seconds": ("gauge", {"queue"}),
    "bereik_queue_agents": ("gauge", {"queue", "state"}),
    "bereik_queue_service_level_ratio": ("gauge", {"queue"}),
    "bereik_queue_average_answer_seconds": ("gauge", {"queue"}),
    "bereik_queue_agents_needed": ("gauge", {"queue"}),
    "bereik_first_line_ratio": ("gauge", {"team"}),
    "bereik_repeat_callers_ratio": ("gauge", {"team"}),
    "bereik_first_line_transfers": ("gauge", {"to_team"}),
    "bereik_first_line_target": ("gauge", set()),
    "bereik_question_recordings": ("counter", {"result"}),
    "bereik_quality_recordings": ("counter", {"team", "result"}),
    "bereik_survey_asked": ("counter", {"team"}),
    "bereik_survey_answers_today": ("gauge", {"team", "question"}),
    "bereik_survey_average_today": ("gauge", {"team", "question"}),
    "bereik_survey_yes_ratio_today": ("gauge", {"team", "question"}),
    "bereik_announcement_callers_today": ("gauge", {"item", "result"}),
    "bereik_worker_up": ("gauge", {"worker"}),
    "bereik_worker_restarts": ("counter", {"worker"}),
    "bereik_set_aside": ("counter", {"source"}),
    "bereik_disk_free_bytes": ("gauge", set()),
    "bereik_disk_free_minimum_bytes": ("gauge", set()),
}


def samples(metrics: BereikMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(metrics: BereikMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_exactly_the_contract_metrics_with_help() -> None:
    metrics = BereikMetrics(["vergunningen"], ["menu"])
    metrics.set_norm_ratios({("vergunningen", "today"): 0.5})
    # The queue's ratios appear once there is something to say (cti/queue/figures.py).
    for gauge in (metrics.queue.service_level, metrics.queue.asa, metrics.queue.agents_needed):
        metrics.queue.set_ratio(gauge, "kcc", 1.0)
    families = {
        f.name: f
        for f in text_string_to_metric_families(metrics.render().decode())
        # The text format carries prometheus_client's *_created timestamps as own families.
        # (bereik_hoppers_created is a counter of ours, hence the type check).
        if not (f.name.endswith("_created") and f.type == "gauge")
    }
    assert set(families) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        assert len(family.documentation) > 30, f"{name} needs real help text"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)


def test_series_exist_at_zero_for_known_teams_and_kcc() -> None:
    metrics = BereikMetrics(["vergunningen"], ["menu"])
    for team in ("kcc", "vergunningen"):
        assert value(metrics, "bereik_calls_answered_total", team=team) == 0
        assert value(metrics, "bereik_hoppers_open", team=team) == 0
        assert value(metrics, "bereik_callbacks_total", team=team, within_norm="false") == 0
        assert value(metrics, "bereik_hoppers_created_total", team=team, reason="after_hours") == 0
        assert value(metrics, "bereik_transfers_total", to_team=team, result="busy") == 0
    assert value(metrics, "bereik_calls_offered_total", entry="14070") == 0
    assert value(metrics, "bereik_agi_failures_total", handler="menu") == 0
    assert value(metrics, "bereik_ami_connected") == 0
    # No norm before anything is decided: 0 % would be a false alarm.
    assert not any(name == "bereik_service_norm_ratio" for name, _ in samples(metrics))


def test_init_teams_adds_on_reload() -> None:
    metrics = BereikMetrics(["a"])
    metrics.init_teams(["b"])
    assert metrics.teams == ("kcc", "a", "b")
    assert value(metrics, "bereik_calls_waiting", team="b") == 0


def test_recording() -> None:
    metrics = BereikMetrics(["vergunningen"])
    metrics.call_offered("14070")
    metrics.call_answered("vergunningen", wait_seconds=17)
    metrics.call_abandoned("kcc")
    metrics.transfer("vergunningen", "no_answer")
    metrics.hopper_created("vergunningen", "no_answer")
    metrics.callback_closed("vergunningen", within_norm=True)
    metrics.set_waiting("kcc", 3)
    metrics.set_ami_connected(True)
    metrics.ami_event_dropped()
    assert value(metrics, "bereik_calls_offered_total", entry="14070") == 1
    assert value(metrics, "bereik_calls_answered_total", team="vergunningen") == 1
    assert value(metrics, "bereik_wait_seconds_bucket", team="vergunningen", le="20.0") == 1
    assert value(metrics, "bereik_wait_seconds_bucket", team="vergunningen", le="10.0") == 0
    assert value(metrics, "bereik_calls_abandoned_total", team="kcc") == 1
    assert value(metrics, "bereik_transfers_total", to_team="vergunningen", result="no_answer") == 1
    assert value(metrics, "bereik_callbacks_total", team="vergunningen", within_norm="true") == 1
    assert value(metrics, "bereik_calls_waiting", team="kcc") == 3
    assert value(metrics, "bereik_ami_connected") == 1
    assert value(metrics, "bereik_ami_events_dropped_total") == 1


def test_wait_buckets() -> None:
    assert WAIT_BUCKETS == (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)


def test_gauges_from_the_database() -> None:
    metrics = BereikMetrics(["vergunningen", "parkeren"])
    metrics.set_hopper_gauges({"vergunningen": (4, 1)})
    assert value(metrics, "bereik_hoppers_open", team="vergunningen") == 4
    assert value(metrics, "bereik_hoppers_overdue", team="vergunningen") == 1
    metrics.set_hopper_gauges({})
    assert value(metrics, "bereik_hoppers_open", team="vergunningen") == 0

    metrics.set_norm_ratios({("parkeren", "7d"): 0.75})
    assert value(metrics, "bereik_service_norm_ratio", team="parkeren", window="7d") == 0.75
    metrics.set_norm_ratios({("parkeren", "7d"): None, ("parkeren", "28d"): None})
    assert value(metrics, "bereik_service_norm_ratio", team="parkeren", window="7d") is None
    metrics.set_norm_ratios({("parkeren", "today"): math.nan})
    assert value(metrics, "bereik_service_norm_ratio", team="parkeren", window="today") is None


@given(st.text(min_size=1, max_size=40))
def test_unknown_label_values_never_make_series(bad: str) -> None:
    metrics = BereikMetrics(["vergunningen"], ["menu"])
    before = set(samples(metrics))
    metrics.call_answered(bad if bad not in metrics.teams else bad + "x")
    metrics.call_offered(bad if bad not in ("14070", "team", "internal") else bad + "x")
    metrics.transfer("vergunningen", bad if bad not in ("answered", "busy") else "x" + bad)
    metrics.set_norm_ratios({("vergunningen", bad if bad not in NORM_WINDOWS else "x"): 0.5})
    AgiMetricsObserver(metrics).failed("/" + bad)
    after = set(samples(metrics))
    new = {labels for name, labels in after - before if "created" not in name}
    assert new <= {frozenset({("handler", "unknown")})}


def test_a_phone_number_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics = BereikMetrics()
    caplog.set_level(logging.WARNING)
    metrics.call_answered("0612345678")
    metrics.call_answered("vergunnigen")
    assert "0612345678" not in caplog.text and "not shown" in caplog.text
    assert "vergunnigen" in caplog.text  # a team id typo is safe to show, and useful


def test_agi_observer() -> None:
    metrics = BereikMetrics()
    observer = AgiMetricsObserver(metrics, ["menu", "route"])
    assert isinstance(observer, AgiObserver)
    observer.command(0.0003)
    observer.handled("menu", 0.2)
    observer.failed("route")
    observer.failed("/cgi-bin/scan")
    observer.refused("calls")
    assert value(metrics, "bereik_agi_command_seconds_bucket", le="0.0005") == 1
    assert value(metrics, "bereik_agi_requests_total", handler="menu") == 1
    assert value(metrics, "bereik_agi_requests_total", handler="route") == 1
    assert value(metrics, "bereik_agi_failures_total", handler="route") == 1
    assert value(metrics, "bereik_agi_failures_total", handler="unknown") == 1
    assert value(metrics, "bereik_agi_refused_total", reason="calls") == 1


def test_registries_are_independent() -> None:
    one, two = BereikMetrics(), BereikMetrics()
    one.call_answered("kcc")
    assert value(two, "bereik_calls_answered_total", team="kcc") == 0
