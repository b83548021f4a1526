"""The Prometheus deployment files are valid and the alerts behave (promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))

PROMTOOL = require_tool("promtool", "prometheus")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(map(str, args))}:\n{result.stdout}{result.stderr}"
    )
    return result


def test_rule_files_exist() -> None:
    names = {path.name for path in RULES}
    assert {"bereik-recording.yml", "bereik-alerts.yml"} <= names
    assert UNIT_TESTS, "no promtool unit tests under deploy/prometheus/tests"


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_check_rules(rules: Path) -> None:
    promtool("check", "rules", rules)


def test_check_config() -> None:
    # check config also loads every rule file the config names, relative to the config.
    result = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert "2 rule files found" in result.stdout


@pytest.mark.parametrize("tests", UNIT_TESTS, ids=lambda p: p.name)
def test_alert_unit_tests(tests: Path) -> None:
    promtool("test", "rules", tests)


def test_every_alert_has_a_unit_test() -> None:
    import yaml

    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "rules" / "bereik-alerts.yml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"


def test_alert_unit_tests_feed_series_that_bereik_exports() -> None:
    """A promtool test of a series name bereik never exports would prove nothing."""
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from metrics.registry import BereikMetrics

    metrics = BereikMetrics(["vergunningen", "parkeren"], ["menu", "route"])
    metrics.set_norm_ratios({("vergunningen", "today"): 0.5})
    metrics.init_worker("outbox")  # a supervised part's series (cti/supervisor.py)
    metrics.init_ami_subscriber("CallListener.on_event")  # a part on the bus (cti/ami/bus.py)
    exported = {
        sample.name
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    fed = {
        series["series"].partition("{")[0]
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for series in test.get("input_series", [])
    }
    ours = {name for name in fed if name.startswith("bereik_")}
    assert "bereik_ami_events_dropped_total" in ours
    assert ours <= exported, f"fed to promtool but not exported: {sorted(ours - exported)}"
