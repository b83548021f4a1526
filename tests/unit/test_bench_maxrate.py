"""The maximum-rate search (bench/maxrate.py): one search for every path, a call that left
less than its path promises counts as failed, and the report's ⅓ verdict per path."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from bench import maxrate
from bench.cpu import CpuSample
from bench.maxrate import Path, max_rate
from bench.report import MaxRate, max_rate_table, max_rate_verdict
from bench.steady import Steady


class Exchange:
    """Sustains `capacity` calls/s; above it sipp fails calls, or (`silent`) the calls end
    normally but leave nothing (no hopper, no answer, no hearing)."""

    def __init__(self, capacity: float, silent: bool) -> None:
        self.capacity, self.silent = capacity, silent
        self.left = 0
        self.config = SimpleNamespace(exchange=SimpleNamespace(main_number="14070"))

    def rows(self, sql: str, **params: object) -> list[SimpleNamespace]:
        return [SimpleNamespace(n=self.left)]  # whatever the path counts


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a call left is there at once here (a missing one need not be waited for), and
    no probe leaves stragglers to wait out."""
    monkeypatch.setattr(maxrate, "SETTLE_SECONDS", 0.2)
    monkeypatch.setattr(maxrate, "PAUSE_SECONDS", 0.0)


class Rig:
    quick = False
    probes = 0
    max_probes = maxrate.PROBES

    def __init__(self, capacity: float, silent: bool = False) -> None:
        self.exchange = Exchange(capacity, silent)
        self.asterisk_pid = self.serve_pid = os.getpid()
        self.placed: list[tuple[float, str]] = []

    def metrics(self) -> str:
        return ""

    @contextlib.contextmanager
    def profile(self, label: str) -> Iterator[None]:
        yield

    async def run_steady(
        self,
        number: str,
        rate: float,
        seconds: float,
        hold_ms: int,
        keys: str = "",
        caller: str = "0612345678",
        pids: dict[str, int] | None = None,
    ) -> tuple[int, int, int, Steady]:
        self.placed.append((rate, caller))
        calls = round(rate * seconds)
        over = rate > self.exchange.capacity
        failed = calls // 10 if over and not self.exchange.silent else 0
        self.exchange.left += calls if not over else calls - calls // 10
        ended = round(rate * 40)
        steady = Steady(
            rate,
            seconds=40.0,
            ended=ended,
            in_progress=(10, 10),
            cpu={"asterisk": CpuSample(30.0 * ended, 0.0), "serve": CpuSample(12.0 * ended, 0.0)},
        )
        return calls, calls, failed, steady


def _left(rig: Any) -> int:
    return int(rig.exchange.left)


PATH = Path("max-test", "14070 → test", "test-path", 8.0, 1000, _left)


def test_the_search_doubles_then_halves_the_gap_and_keeps_the_highest_rate_that_held() -> None:
    rig = Rig(capacity=20)
    found = asyncio.run(max_rate(rig, PATH))  # type: ignore[arg-type]
    assert [rate for rate, _ in rig.placed] == [8, 16, 32, 24, 20, 22]
    assert found.rate == 20 and found.path == "14070 → test"
    assert found.asterisk_ms == pytest.approx(30.0) and found.serve_ms == pytest.approx(12.0)


def test_calls_that_leave_nothing_fail_the_probe_though_sipp_saw_none_fail() -> None:
    rig = Rig(capacity=12, silent=True)
    found = asyncio.run(max_rate(rig, PATH))  # type: ignore[arg-type]
    assert found.rate == 12
    missing = [probe for probe in found.probes if probe.rate > 12]
    assert missing and all(probe.failed == probe.placed // 10 for probe in missing)


def test_a_path_that_keeps_state_per_number_gets_a_number_per_call_and_probe() -> None:
    rig = Rig(capacity=100)
    rig.max_probes = 2
    asyncio.run(max_rate(rig, maxrate.HOPPER))  # type: ignore[arg-type]
    asyncio.run(max_rate(rig, maxrate.IVR))  # type: ignore[arg-type]
    callers = [caller for _, caller in rig.placed]
    assert callers == ["0612010000[call_number]", "0612020000[call_number]"] + 2 * ["0612345678"]


def test_the_quick_run_probes_each_path_once_at_its_own_quick_rate() -> None:
    rig = Rig(capacity=100)
    rig.quick = True
    for path in maxrate.PATHS.values():
        asyncio.run(max_rate(rig, path))  # type: ignore[arg-type]
    assert [rate for rate, _ in rig.placed] == [path.quick_rate for path in maxrate.PATHS.values()]


def test_each_path_s_verdict_says_by_how_much_serve_misses_a_third_of_asterisk() -> None:
    missed = MaxRate(rate=18, asterisk_ms=60.0, serve_ms=24.0, path="14070 → a")
    met = MaxRate(rate=30, asterisk_ms=30.0, serve_ms=9.0, path="14070 → b")
    assert max_rate_verdict(missed)[0] == (
        "- max rate 18/s (14070 → a): bereik serve CPU per call 24.0 ms = 0.40 × Asterisk's "
        "60.0 ms (MISSED: ≤ ⅓ ×; 4.0 ms/call over the 20.0 allowed, 20%)"
    )
    assert max_rate_verdict(met)[0] == (
        "- max rate 30/s (14070 → b): bereik serve CPU per call 9.0 ms = 0.30 × Asterisk's "
        "30.0 ms (met: ≤ ⅓ ×)"
    )
    assert max_rate_verdict(MaxRate(path="14070 → c", note=" not measured: no hopper")) == [
        "- 14070 → c: no rate held: not measured: no hopper"
    ]


def test_the_paths_share_one_table_with_serve_over_asterisk() -> None:
    lines = max_rate_table(
        [
            MaxRate(rate=18, asterisk_ms=60.0, serve_ms=24.0, path="14070 → a"),
            MaxRate(rate=30, asterisk_ms=30.0, serve_ms=9.0, path="14070 → b"),
        ]
    )
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    ratio = header.index("serve ÷ Asterisk")
    rows = {line.split("|")[1].strip(): line.split("|") for line in lines[2:4]}
    assert rows["14070 → a"][ratio + 1].strip() == "0.40"
    assert rows["14070 → b"][ratio + 1].strip() == "0.30"
    assert any(line.startswith("probes of 14070 → b") for line in lines)
