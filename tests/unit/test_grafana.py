"""The Grafana dashboards load, are well formed, and only ask for series that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from metrics.registry import BereikMetrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMETHEUS = ROOT / "deploy" / "prometheus"


def load_checker() -> ModuleType:
    # deploy/ is not a package: load the CI script by path.
    spec = importlib.util.spec_from_file_location(
        "check_expressions", GRAFANA / "check_expressions.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


checker = load_checker()


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        found.append(panel)
        stack.extend(panel.get("panels", []))
    return found


def datasource_uid() -> str:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    (source,) = provisioned["datasources"]
    return str(source["uid"])


def test_both_dashboards_exist() -> None:
    assert {path.name for path in DASHBOARDS} == {"wallscreen.json", "team.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    uid = datasource_uid()
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        assert panel["datasource"]["uid"] == uid
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty expr"
            assert target["datasource"]["uid"] == uid
            assert target["refId"]


def test_wallscreen_norm_thresholds() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "wallscreen.json").read_text())
    norm_panels = [
        panel
        for panel in panels(dashboard)
        if any("bereik_service_norm_ratio" in t["expr"] for t in panel["targets"])
        and panel["type"] in ("stat", "gauge")
    ]
    assert norm_panels
    for panel in norm_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [(s["color"], s["value"]) for s in steps] == [
            ("red", None),
            ("orange", 0.8),
            ("green", 0.9),
        ]
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_team_dashboard_has_a_team_variable_from_label_values() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "team.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "team"]
    assert variable["type"] == "query"
    assert "label_values(" in variable["definition"] and "team)" in variable["definition"]
    exprs = [t["expr"] for panel in panels(dashboard) for t in panel["targets"]]
    assert all("$team" in expr for expr in exprs), "every team panel must filter on $team"


def test_dashboard_provider_points_at_a_dashboards_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"]


def test_grafana_variables_are_substituted() -> None:
    out = checker.substitute(
        'rate(x{team="$team",a="${team}",b="[[team]]"}[$__rate_interval]) and y[$__range]',
        {"team": "kcc"},
    )
    assert out == 'rate(x{team="kcc",a="kcc",b="kcc"}[1m]) and y[1h]'
    assert "$" not in out


def test_expressions_are_collected_from_dashboards_and_rules() -> None:
    sources = {item.source.split(":")[0] for item in checker.collect({"team": "kcc"})}
    assert sources == {"team.json", "wallscreen.json", "bereik-alerts.yml", "bereik-recording.yml"}


def known_series() -> set[str]:
    metrics = BereikMetrics(teams=["t"], handlers=["h"])
    metrics.init_worker("outbox")  # a supervised part's series (cti/supervisor.py)
    metrics.init_ami_subscriber("CallListener.on_event")  # a part on the bus (cti/ami/bus.py)
    metrics.set_norm_ratios({("t", "today"): 1.0})  # series not pre-created: the ratios
    for gauge in (metrics.queue.service_level, metrics.queue.asa, metrics.queue.agents_needed):
        metrics.queue.set_ratio(gauge, "kcc", 1.0)
    names = set(re.findall(r"^(\w+)[{ ]", metrics.render().decode(), re.MULTILINE))
    # Series Prometheus adds itself, and those the recording rules create.
    names |= {"up", "scrape_duration_seconds"}
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_every_series_used_exists() -> None:
    """The contract: a renamed metric must break this test, not a wall screen at night."""
    known = known_series()
    used = 0
    for item in checker.collect({"team": "kcc"}):
        without_strings = re.sub(r'"[^"]*"', '""', item.promql)
        # Metric names and recording-rule names all contain "bereik"; label names do not.
        for name in re.findall(r"[a-z_:]*bereik[a-z0-9_:]*", without_strings):
            used += 1
            assert name in known, f"{item.source}: unknown series {name}"
    assert used > 20


def test_every_expression_parses() -> None:
    require_tool("promtool", "prometheus")
    expressions = checker.collect({"team": "kcc"})
    assert len(expressions) > 20
    assert checker.check_with_promtool(expressions) == []


def test_a_broken_expression_is_reported() -> None:
    require_tool("promtool", "prometheus")
    broken = checker.Expression("test", "panel", "sum(rate(x[5m])", "sum(rate(x[5m])")
    good = checker.Expression("good", "panel", "up", "up")
    problems = checker.check_with_promtool([good, broken])
    assert len(problems) == 1 and problems[0].startswith("test:")
