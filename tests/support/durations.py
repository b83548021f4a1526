"""Where the test command's time goes: each test's seconds and the worker that ran it.

As a pytest plugin (`-p tests.support.durations`, scripts/test loads it) it appends one
JSON line per test to test-artifacts/durations/<stage>.jsonl as it ends: the test, its
setup, call and teardown seconds, the xdist worker (or "main") and whether it failed.
`BEREIK_TEST_STAGE` names the stage (scripts/test sets it: unit, parallel, solo).

It also orders the tests it runs so that the workers finish together: by the seconds the
last whole run took (the table in docs/durations.md), dealt to the workers longest first
(each worker's first share is as long as the others', xdist's worksteal balances the rest
from the short ends). A test the table does not know yet counts as a long one.

As a command it turns the last run's lines into the table of docs/durations.md (between
its figure markers, bench/docfigures.py):

    .venv/bin/python -m tests.support.durations [--stages-file FILE] [--out docs/durations.md]

The stages file (scripts/test writes test-artifacts/durations/stages.tsv: stage, wall
seconds) gives each stage's wall time; the table lists every test, slowest first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bench import docfigures

REPO = Path(__file__).resolve().parents[2]
DIRECTORY = REPO / "test-artifacts" / "durations"


def _stage() -> str:
    return os.environ.get("BEREIK_TEST_STAGE", "adhoc")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        DIRECTORY.mkdir(parents=True, exist_ok=True)
        (DIRECTORY / f"{_stage()}.jsonl").unlink(missing_ok=True)


# A table row of docs/durations.md: | `test id` | stage | seconds | ...
TABLE_ROW = re.compile(r"^\| `(?P<test>[^`]+)` \| \w+ \| (?P<seconds>[\d.]+) \|", re.M)
UNKNOWN_SECONDS = 60.0  # a new test: scheduled early, as if long, so it cannot end the run


def last_run_seconds(page: Path = REPO / "docs" / "durations.md") -> dict[str, float]:
    """Each test's seconds in the last whole run, from the table in docs/durations.md."""
    if not page.exists():
        return {}
    return {m["test"]: float(m["seconds"]) for m in TABLE_ROW.finditer(page.read_text())}


def dealt(items: list[Any], seconds: dict[str, float], workers: int) -> list[Any]:
    """`items` in the order that gives each of `workers` xdist workers an even share.

    xdist's worksteal hands worker i the i-th contiguous block of the list (blocks of
    equal count, the smaller first), then lets an idle worker take the tail of a busy
    one's. So the items are dealt longest first, each to the block with the fewest
    seconds so far that still has room, and each block runs longest first: the shares
    start even, and what is taken at the end is short."""

    def cost(item: Any) -> float:
        return seconds.get(item.nodeid, UNKNOWN_SECONDS)

    longest_first = sorted(items, key=lambda item: -cost(item))
    if workers < 2:
        return longest_first
    room, remaining = [], len(items)
    for n in range(workers):
        room.append(remaining // (workers - n))
        remaining -= room[-1]
    blocks: list[list[Any]] = [[] for _ in range(workers)]
    totals = [0.0] * workers
    for item in longest_first:
        n = min((n for n in range(workers) if len(blocks[n]) < room[n]), key=totals.__getitem__)
        blocks[n].append(item)
        totals[n] += cost(item)
    return [item for block in blocks for item in block]


@pytest.hookimpl(trylast=True)  # after the suites' markers and the skip checks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The same order in every xdist worker and the controller: one file, one rule.
    workers = getattr(config, "workerinput", {}).get("workercount") or config.getoption(
        "numprocesses", default=0
    )
    try:
        count = int(workers or 0)
    except ValueError:  # "auto" before xdist resolved it: the plain longest-first order
        count = 0
    items[:] = dealt(items, last_run_seconds(), count)


_seconds: dict[str, dict[str, float]] = defaultdict(dict)
_failed: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # With xdist the controller sees every worker's reports too: it alone writes.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    _seconds[report.nodeid][report.when] = report.duration
    if report.failed:
        _failed.add(report.nodeid)
    if report.when != "teardown":
        return
    phases = _seconds.pop(report.nodeid)
    node = getattr(report, "node", None)  # set by xdist on the controller's copy
    line = {
        "test": report.nodeid,
        "worker": getattr(getattr(node, "gateway", None), "id", "main"),
        "setup": round(phases.get("setup", 0.0), 2),
        "call": round(phases.get("call", 0.0), 2),
        "teardown": round(phases.get("teardown", 0.0), 2),
        "outcome": "failed" if report.nodeid in _failed else "passed",
    }
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    with (DIRECTORY / f"{_stage()}.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


def seconds(line: dict[str, Any]) -> float:
    return float(line["setup"] + line["call"] + line["teardown"])


def read_stage(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(directory: Path, stages: dict[str, float]) -> str:
    """The table: per stage its wall time and test count, then every test, slowest first."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.jsonl")):
        rows += [(path.stem, line) for line in read_stage(path)]
    lines = [
        "| stage | wall minutes | tests | test seconds summed |",
        "|---|---:|---:|---:|",
    ]
    for stage in dict.fromkeys([*stages, *(stage for stage, _ in rows)]):
        in_stage = [line for name, line in rows if name == stage]
        wall = f"{stages[stage] / 60:.1f}" if stage in stages else "-"
        summed = sum(seconds(line) for line in in_stage)
        lines.append(f"| {stage} | {wall} | {len(in_stage)} | {summed:.0f} |")
    if stages:
        lines.append(f"| **all stages** | {sum(stages.values()) / 60:.1f} | {len(rows)} | |")
    lines += [
        "",
        "| test | stage | seconds | setup | call | teardown | worker | outcome |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for stage, line in sorted(rows, key=lambda row: -seconds(row[1])):
        lines.append(
            f"| `{line['test']}` | {stage} | {seconds(line):.1f} | {line['setup']:.1f} "
            f"| {line['call']:.1f} | {line['teardown']:.1f} | {line['worker']} "
            f"| {line.get('outcome', '')} |"
        )
    return "\n".join(lines)


def read_stages(path: Path) -> dict[str, float]:
    stages: dict[str, float] = {}
    if path.exists():
        for row in path.read_text().splitlines():
            name, _, seconds = row.partition("\t")
            if seconds:
                stages[name] = float(seconds)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=DIRECTORY)
    parser.add_argument("--stages-file", type=Path, default=DIRECTORY / "stages.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "durations.md")
    args = parser.parse_args()
    table = render(args.directory, read_stages(args.stages_file))
    # The run's commit (scripts/test writes it), not the one checked out now.
    ran = args.directory / "commit"
    commit = ran.read_text().strip() if ran.exists() else docfigures.commit()
    docfigures.rewrite(
        args.out,
        "durations",
        table,
        command=".venv/bin/python -m tests.support.durations",
        on=f"a run of commit {commit}, {docfigures.machine(load=False)}",
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
