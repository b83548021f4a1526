"""The supervisor: a part that raises is shown down, restarted after its backoff, and
counted; a part that ends its job is done, not down; a stop cancels without a restart."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from cti.supervisor import Supervisor
from metrics.registry import BereikMetrics


def sample(metrics: BereikMetrics, name: str, worker: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"worker": worker})


async def until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


async def test_a_part_that_raises_is_down_then_restarted_after_its_backoff_and_counted() -> None:
    metrics = BereikMetrics()
    supervisor = Supervisor(metrics, backoff_min=0.2, backoff_max=1.0)
    runs: list[float] = []
    done = asyncio.Event()

    async def outbox() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("SMTP said something odd")
        done.set()  # the second run does the work the first one owed
        await asyncio.Event().wait()

    supervisor.add("outbox", outbox)
    assert sample(metrics, "bereik_worker_up", "outbox") == 0
    assert sample(metrics, "bereik_worker_restarts_total", "outbox") == 0
    supervisor.start()
    try:
        await until(lambda: supervisor.parts["outbox"].restarts == 1)
        assert supervisor.down() == ["outbox"]
        assert sample(metrics, "bereik_worker_up", "outbox") == 0
        assert sample(metrics, "bereik_worker_restarts_total", "outbox") == 1
        assert supervisor.parts["outbox"].last_error == "RuntimeError: SMTP said something odd"
        await asyncio.wait_for(done.wait(), 2)
        assert sample(metrics, "bereik_worker_up", "outbox") == 1
        assert supervisor.down() == []
        # Restarted within its backoff (0.2-0.25 s), not at once and not much later.
        assert 0.2 <= runs[1] - runs[0] < 0.6
    finally:
        await supervisor.stop()


async def test_the_backoff_doubles_up_to_its_cap_for_a_part_that_crashes_on_every_start() -> None:
    supervisor = Supervisor(None, backoff_min=0.05, backoff_max=0.2)
    starts: list[float] = []

    async def broken() -> None:
        starts.append(time.monotonic())
        raise ValueError("bad configuration")

    supervisor.add("broken", broken)
    supervisor.start()
    try:
        await until(lambda: len(starts) >= 6)
    finally:
        await supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] == pytest.approx(0.05, abs=0.03)
    assert gaps[1] == pytest.approx(0.1, abs=0.04)
    assert all(gap < 0.2 * 1.25 + 0.05 for gap in gaps), gaps  # never past the cap
    assert gaps[-1] >= 0.2 - 0.01


async def test_a_part_that_finishes_its_job_is_done_not_down() -> None:
    metrics = BereikMetrics()
    supervisor = Supervisor(metrics)

    async def warm_up() -> None:
        return None

    supervisor.add("prompt warm-up", warm_up)
    supervisor.start()
    try:
        await until(lambda: supervisor.parts["prompt warm-up"].finished)
        assert supervisor.down() == []
        assert sample(metrics, "bereik_worker_up", "prompt warm-up") == 1
        assert supervisor.parts["prompt warm-up"].restarts == 0
    finally:
        await supervisor.stop()


async def test_stopping_cancels_every_part_without_a_restart() -> None:
    supervisor = Supervisor(None, backoff_min=0.01)
    cancelled: list[str] = []

    async def worker() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("worker")
            raise

    supervisor.add("worker", worker)
    supervisor.start()
    await asyncio.sleep(0.01)
    await supervisor.stop()
    assert cancelled == ["worker"]
    assert supervisor.parts["worker"].restarts == 0


def test_two_parts_may_not_share_a_name() -> None:
    supervisor = Supervisor(None)
    supervisor.add("outbox", lambda: asyncio.sleep(0))
    with pytest.raises(ValueError, match="outbox"):
        supervisor.add("outbox", lambda: asyncio.sleep(0))


async def test_an_ami_reconnect_loop_that_meets_an_unexpected_fault_is_restarted() -> None:
    from cti.ami.client import AmiClient

    metrics = BereikMetrics()
    client = AmiClient("127.0.0.1", 9, "bereik", "secret", backoff_min=0.01, backoff_max=0.02)
    connects: list[int] = []

    async def connect() -> None:
        connects.append(1)
        if len(connects) == 1:
            raise KeyError("Response")  # a fault the loop does not expect
        raise ConnectionRefusedError("no Asterisk here")  # the loop's own business

    client._connect = connect  # type: ignore[method-assign]
    supervisor = Supervisor(metrics, backoff_min=0.05)
    for name, loop in client.loops().items():
        supervisor.add(name, loop)
    supervisor.start()
    try:
        await until(lambda: len(connects) >= 3)
    finally:
        await supervisor.stop()
    assert list(supervisor.parts) == ["ami"]
    assert supervisor.parts["ami"].restarts == 1
    assert supervisor.parts["ami"].up  # back in its own reconnect loop
    assert not client.connected
