#!/usr/bin/env python3
"""Check every PromQL expression of the dashboards and the Prometheus rules.

    check_expressions.py --url http://127.0.0.1:9090            # against a live Prometheus
    check_expressions.py --url http://127.0.0.1:9090 --require-data
    check_expressions.py --promtool                              # offline: parse only
    check_expressions.py --list                                  # print what would be checked

It finds the ``expr`` of every panel target in deploy/grafana/dashboards/*.json (rows'
nested panels included), every ``label_values(metric, label)`` template variable, and every
rule in deploy/prometheus/rules/*.yml. Grafana's own variables ($__range, $__rate_interval,
$team, ...) are not PromQL, so they are replaced by plain values first (see ``substitute``).

With --url each expression goes through /api/v1/query; any error (parse error, unknown
function, bad matcher, server error) fails the run. An empty result is not an error unless
--require-data is given (it then applies to panels, variables and recording rules, not to
alerts, whose expression is empty while all is well).
With --promtool each expression becomes a one-rule file and ``promtool check rules`` parses
them all, so no server is needed. Exit status: 0 all good, 1 a check failed, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
RULES = HERE.parent / "prometheus" / "rules"

# Grafana's built-in interval variables, as plain PromQL durations and numbers.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "15000",
}
LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<metric>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Expression:
    source: str  # where it was found, for the report: file and panel or rule
    kind: str  # panel, variable, record or alert
    expr: str  # as written
    promql: str  # after substitution: what is sent to Prometheus


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) by values that parse as PromQL."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return variables[name]
        # An unknown dashboard variable: a placeholder that parses inside quotes.
        return "x"

    return VARIABLE.sub(value, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(path: Path, variables: dict[str, str]) -> Iterator[Expression]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                title = panel.get("title", panel.get("id"))
                source = f"{path.name}: panel {title!r} {target.get('refId', '')}"
                yield Expression(source, "panel", expr, substitute(expr, variables))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = LABEL_VALUES.match(text)
        if match and match.group("metric"):
            # label_values(m, l) is Grafana's; this query asks Prometheus the same question.
            promql = f"count by ({match.group('label')}) ({match.group('metric')})"
            source = f"{path.name}: variable {variable.get('name')!r}"
            yield Expression(source, "variable", text, substitute(promql, variables))


def rule_expressions(path: Path) -> Iterator[Expression]:
    import yaml  # PyYAML: only needed here, so --list on dashboards works without it

    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            kind = "record" if "record" in rule else "alert"
            source = f"{path.name}: {group.get('name')}/{rule.get(kind)}"
            yield Expression(source, kind, rule["expr"], rule["expr"])


def collect(variables: dict[str, str] | None = None) -> list[Expression]:
    variables = variables or {}
    found: list[Expression] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        found.extend(dashboard_expressions(path, variables))
    for path in sorted(RULES.glob("*.yml")):
        found.extend(rule_expressions(path))
    return found


def query(url: str, promql: str, timeout: float = 10.0) -> tuple[str | None, int]:
    """Run an instant query; return (error or None, number of result series)."""
    endpoint = url.rstrip("/") + "/api/v1/query"
    data = urllib.parse.urlencode({"query": promql}).encode()
    request = urllib.request.Request(endpoint, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        # Prometheus answers a bad query with 400 and a JSON body naming the problem.
        try:
            body = json.load(exc)
        except ValueError:
            return f"HTTP {exc.code}", 0
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        return f"request failed: {exc}", 0
    if body.get("status") != "success":
        return f"{body.get('errorType', 'error')}: {body.get('error', body)}", 0
    result = body.get("data", {}).get("result", [])
    return None, len(result) if isinstance(result, list) else 1


def check_with_prometheus(
    expressions: list[Expression], url: str, require_data: bool, allow_empty: str = ""
) -> list[str]:
    problems = []
    for item in expressions:
        error, series = query(url, item.promql)
        # An alert's expression is empty while all is well, so only the others need data;
        # `allow_empty` names series the exchange under test has no reason to export (e.g.
        # the waiting line's when the KCC is a ring group).
        optional = bool(allow_empty) and re.search(allow_empty, item.promql) is not None
        if error is None and require_data and series == 0 and item.kind != "alert" and not optional:
            error = "no data"
        if error:
            problems.append(f"{item.source}: {error}\n    {item.promql}")
    return problems


def check_with_promtool(expressions: list[Expression], promtool: str | None = None) -> list[str]:
    """Parse each expression with ``promtool check rules``: one rule file per expression."""
    promtool = promtool or shutil.which("promtool")
    if promtool is None:
        raise FileNotFoundError("promtool not found")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for index, item in enumerate(expressions):
            path = Path(tmp) / f"expr{index:03d}.yml"
            # JSON is YAML, so no YAML writer is needed for promtool's input.
            rules = {
                "groups": [
                    {"name": "check", "rules": [{"record": "check:expr", "expr": item.promql}]}
                ]
            }
            path.write_text(json.dumps(rules), encoding="utf-8")
            files.append(path)
        if not files:
            return []
        result = subprocess.run(
            [promtool, "check", "rules", *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            return []
        output = result.stdout + result.stderr
        for item, path in zip(expressions, files, strict=True):
            # promtool prints each error as "<file>: <line:col>: ... <message>" on stderr.
            errors = [line for line in output.splitlines() if line.startswith(f"{path}:")]
            if errors:
                message = " / ".join(line.removeprefix(f"{path}:").strip() for line in errors)
                problems.append(f"{item.source}: {message}\n    {item.promql}")
        if not problems:
            problems.append(f"promtool failed:\n{output}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    mode.add_argument("--promtool", action="store_true", help="parse with promtool, no server")
    mode.add_argument("--list", action="store_true", help="print the expressions and exit")
    parser.add_argument("--require-data", action="store_true", help="fail on an empty result")
    parser.add_argument(
        "--allow-empty",
        default="",
        metavar="REGEX",
        help="with --require-data: expressions matching REGEX may be empty",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value for a dashboard variable (default: team=kcc, which always has series)",
    )
    args = parser.parse_args(argv)
    variables = {"team": "kcc"}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--var {item!r}: expected NAME=VALUE")
        variables[name] = value

    expressions = collect(variables)
    if args.list:
        for item in expressions:
            print(f"{item.source}\n    {item.promql}")
        return 0
    if args.promtool:
        problems = check_with_promtool(expressions)
    else:
        problems = check_with_prometheus(expressions, args.url, args.require_data, args.allow_empty)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(f"{len(expressions) - len(problems)}/{len(expressions)} expressions OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
