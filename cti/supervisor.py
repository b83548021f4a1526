"""One supervisor for every long-running part of `bereik serve`.

The workers, the AMI event bus, each AMI client's reconnect loop and the call tracking
lease run as tasks of this supervisor. A part that raises is logged with its traceback,
shown as down (``bereik_worker_up{worker} 0``, /healthz, the wall screen) and started
again after a backoff that doubles up to BACKOFF_MAX; a part that then runs for
STEADY_SECONDS has its backoff reset. Nothing a part raises ends the process, and no part
stays dead unseen: a crash counts on ``bereik_worker_restarts_total`` and the
``BereikWorkerRestarted`` alert names it.

The backoff's floor is two seconds on purpose: a part that crashes at once on every start
(a fault of ours, or of its configuration) costs little, and a Prometheus scraping every
second or more often sees it down at least once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from metrics.registry import BereikMetrics

log = logging.getLogger("bereik.supervisor")

BACKOFF_MIN = 2.0
BACKOFF_MAX = 60.0
STEADY_SECONDS = 60.0

Worker = Callable[[], Awaitable[None]]


@dataclass
class PartState:
    """What the operator sees of one part (on /healthz and `bereik status`)."""

    name: str
    up: bool = False
    restarts: int = 0
    # The last crash, "Type: message"; kept after the restart, for the operator.
    last_error: str = ""
    # Wall-clock time of the last change of `up` (seconds since the epoch).
    since: float = 0.0
    # A one-off job (the prompt warm-up) that returned: done, not down.
    finished: bool = False
    # When it is down: when the next start is due (wall clock).
    restart_at: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "up": self.up,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "since": round(self.since, 3),
            "finished": self.finished,
            **({"restart_at": round(self.restart_at, 3)} if not self.up else {}),
        }


class Supervisor:
    def __init__(
        self,
        metrics: BereikMetrics | None = None,
        *,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        steady_seconds: float = STEADY_SECONDS,
    ) -> None:
        self.metrics = metrics
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.steady_seconds = steady_seconds
        self.parts: dict[str, PartState] = {}
        self._workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, worker: Worker) -> None:
        """Register a part; `worker` is called again for each (re)start."""
        if name in self.parts:
            raise ValueError(f"two parts named {name!r}")
        self._workers[name] = worker
        self.parts[name] = PartState(name, since=time.time())
        if self.metrics is not None:
            self.metrics.init_worker(name)

    def start(self) -> None:
        for name, worker in self._workers.items():
            self._tasks.append(asyncio.create_task(self._keep(name, worker), name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def down(self) -> list[str]:
        """The parts waiting to be restarted, by name."""
        return sorted(name for name, part in self.parts.items() if not part.up)

    def _set(self, part: PartState, up: bool) -> None:
        part.up = up
        part.since = time.time()
        if self.metrics is not None:
            self.metrics.set_worker_up(part.name, up)

    async def _keep(self, name: str, worker: Worker) -> None:
        part = self.parts[name]
        delay = self.backoff_min
        while True:
            started = time.monotonic()
            self._set(part, True)
            try:
                await worker()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the supervisor is what stands behind every part
                log.exception("%s crashed; restarting it", name)
                # The first line only: a statement's parameters (numbers) stay in the log.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                part.last_error = f"{type(exc).__name__}: {first}"[:300]
            else:
                part.finished = True
                log.info("%s finished", name)
                return
            if time.monotonic() - started >= self.steady_seconds:
                delay = self.backoff_min  # it ran well for a while: a fresh fault
            wait = random.uniform(delay, delay * 1.25)  # jitter: parts don't restart in step
            part.restart_at = time.time() + wait
            part.restarts += 1
            self._set(part, False)
            if self.metrics is not None:
                self.metrics.worker_restarted(name)
            log.warning("%s restarts in %.1f s (restart %d)", name, wait, part.restarts)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max)
