"""6. The HTTP API fuzzed from its own OpenAPI document (schemathesis) on a running exchange.

Every operation of /api/openapi.json gets requests that fit the document (positive) and
requests that break it (negative), with an admin's API token, against a real bereik
serve with a real Asterisk behind it. No answer may be a 5xx, and every 4xx must say
what was wrong in JSON: ``{"error": "..."}``. Bounded: a few examples per operation
and mode, so it runs in about a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err

from bench.exchange import Exchange, Phone, exchange, free_port
from dialplan import asterisk
from tests.resilience.figures import Figures
from tests.support.users import api_tokens

EXAMPLES = int(os.environ.get("BEREIK_API_FUZZ_EXAMPLES", "12"))
TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""


@pytest.fixture
def served(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM) as ex:
        ex.start_asterisk()
        ex.start_serve()
        yield ex


def test_every_api_operation_answers_fuzzed_requests_without_a_5xx_and_with_json_errors(
    served: Exchange, figures: Figures
) -> None:
    ex = served
    token = asyncio.run(api_tokens(ex, [("root", "admin", "", "")]))["root"]
    auth = {"Authorization": f"Bearer {token}"}
    with urllib.request.urlopen(
        urllib.request.Request(ex.url("/api/openapi.json"), headers=auth), timeout=10
    ) as response:
        document = json.loads(response.read())
    schema = schemathesis.openapi.from_dict(document)

    seen: dict[int, int] = {}
    problems: list[str] = []
    operations = 0
    unsatisfiable: list[str] = []

    def check(case: Any, mode: str) -> None:
        response = case.call(base_url=ex.url(""), headers=auth, timeout=30)
        status = response.status_code
        seen[status] = seen.get(status, 0) + 1
        where = f"{mode} {case.method} {case.formatted_path}"
        if status >= 500:
            problems.append(f"{where}: {status} {response.text[:200]!r}")
        elif 400 <= status < 500:
            try:
                error = response.json().get("error")
            except (ValueError, AttributeError):
                error = None
            if not isinstance(error, str) or not error.strip():
                problems.append(f"{where}: {status} without a JSON error: {response.text[:200]!r}")

    def fuzz(operation: Any, mode: Any) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            check(case, mode.value)

        try:
            run()
        except Unsatisfiable:
            # An operation with nothing to break (no parameters, no body) has no
            # negative cases; its positive ones ran.
            unsatisfiable.append(f"{mode.value} {operation.label}")

    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI schema has an invalid operation: {result.err()}")
        operation = result.ok()
        operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz(operation, mode)

    requests = sum(seen.values())
    figures.title = "API fuzzed from OpenAPI"
    figures["operations"] = operations
    figures["requests"] = requests
    figures["5xx"] = sum(n for s, n in seen.items() if s >= 500)
    figures["4xx without a JSON error"] = sum("without a JSON error" in p for p in problems)
    figures["without negative cases"] = len(unsatisfiable)
    figures["statuses"] = " ".join(f"{s}×{n}" for s, n in sorted(seen.items()))
    assert operations >= 15 and requests >= operations
    assert problems == [], "\n".join(problems[:30])
    assert "Traceback" not in ex.serve_log.read_text()
