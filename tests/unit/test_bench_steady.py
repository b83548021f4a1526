"""The bench's steady window: CPU per call only where calls in progress have levelled off."""

from __future__ import annotations

from bench.cpu import CpuSample
from bench.report import Probe
from bench.steady import Point, window


def _run(rate: float, seconds: int, duration: int, ms_per_call: float) -> list[Point]:
    """sipp's statistics of a run at `rate` of calls lasting `duration` s, one line a second,
    with a process that spends `ms_per_call` per call while the call lasts."""
    points = []
    for t in range(1, seconds + duration + 1):
        placed = min(round(rate * t), round(rate * seconds))
        ended = max(0, min(round(rate * (t - duration)), placed))
        spent = sum(
            ms_per_call * (min(t, start + duration) - start) / duration
            for start in (n / rate for n in range(placed))
            if start < t
        )
        points.append(
            Point(
                at=float(t),
                placed=placed,
                ended=ended,
                in_progress=placed - ended,
                cpu={"serve": CpuSample(spent, 0.0)},
                line=t,
            )
        )
    return points


def test_a_steady_run_gives_the_cpu_per_call_and_its_check_adds_up() -> None:
    steady = window(_run(rate=10, seconds=30, duration=5, ms_per_call=40), rate=10)
    per_call = steady.per_call("serve")
    assert per_call is not None and abs(per_call.total_ms - 40) < 1
    assert steady.in_progress == (50, 50)
    assert steady.cores is not None and steady.cores_from_rate is not None
    assert abs(steady.cores - 0.4) < 0.01 and abs(steady.cores_from_rate - 0.4) < 0.01


def test_a_run_shorter_than_its_calls_has_no_steady_window() -> None:
    steady = window(_run(rate=10, seconds=3, duration=20, ms_per_call=40), rate=10)
    assert steady.per_call("serve") is None
    assert "no steady window" in steady.check()


def _piling_up(rate: float, seconds: int, served: float) -> list[Point]:
    """A run whose calls end at only `served` calls/s: the calls in progress keep growing."""
    return [
        Point(
            at=float(t),
            placed=round(rate * t),
            ended=round(served * max(0, t - 5)),
            in_progress=round(rate * t) - round(served * max(0, t - 5)),
            cpu={"serve": CpuSample(1000.0 * t, 0.0)},
            line=t,
        )
        for t in range(1, seconds + 1)
    ] + [
        Point(
            at=float(seconds + 1),
            placed=round(rate * seconds) + 1,
            ended=0,
            in_progress=0,
            cpu={"serve": CpuSample(0.0, 0.0)},
            line=seconds + 1,
        )
    ]


def test_a_probe_whose_calls_pile_up_is_not_held_though_none_failed() -> None:
    whole = {"asterisk": CpuSample(0.0, 0.0), "serve": CpuSample(0.0, 0.0)}
    piling = Probe(20, 1200, 0, window(_piling_up(20, 60, served=15), rate=20), whole)
    assert not piling.levelled
    assert not piling.held(required_steady=True)
    steady = Probe(10, 300, 0, window(_run(10, 30, 5, 40), rate=10), whole)
    assert steady.levelled and steady.held(required_steady=True)
    assert not Probe(10, 300, 1, steady.steady, whole).held(required_steady=True)
