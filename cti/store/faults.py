"""One policy for a fault of the store, for every worker that writes.

* The store is down, locked, restarting or failing over (`store_down`: the statement did
  not happen and may be tried again): wait with a doubling backoff and keep the work.
  Nothing is lost and nothing is skipped: the work behind it waits too, in order.
* Anything else (a value the schema refuses, a fault of ours): trying again would fail
  the same way and hold back all later work, and dropping it would lose a call row. The
  work item is set aside in the ``set_aside`` table with its error, counted on
  ``bereik_set_aside_total{source}`` (alert ``BereikWorkSetAside``), and the worker goes on
  with the next item. `bereik events list` shows what was set aside, `bereik events retry`
  replays it through the source's replayer once the fault is fixed.

A fault that belongs to no one work item (a worker's claim or scan) is not set aside: it
raises, and the supervisor (cti/supervisor.py) restarts the worker after its backoff.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update

from cti.store.db import Sessions, store_down
from cti.store.models import SetAside
from metrics.registry import BereikMetrics

log = logging.getLogger("bereik.store.faults")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0

T = TypeVar("T")
# Writes one set-aside item again (`bereik events retry`): the payload as it was kept.
Replayer = Callable[[Mapping[str, Any]], Awaitable[None]]


def describe(exc: BaseException) -> str:
    """The error as the operator reads it: its type and its first line."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:2000]


async def until_stored(
    write: Callable[[], Awaitable[T]],
    *,
    what: str,
    logger: logging.Logger = log,
    backoff_max: float = BACKOFF_MAX,
) -> T:
    """`write()`'s result once the store takes it. While the store is down (`store_down`)
    it waits with a doubling backoff, keeping the work; any other error is raised."""
    delay = BACKOFF_MIN
    failures = 0
    while True:
        try:
            result = await write()
        except Exception as exc:  # the policy: transient waits, the rest goes up
            if not store_down(exc):
                raise
            failures += 1
            logger.warning(
                "store unavailable (%s); keeping %s, retrying in %.1f s",
                describe(exc),
                what,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max)
            continue
        if failures:
            logger.info("stored %s after %d failed attempts", what, failures)
        return result


async def every(
    seconds: float,
    job: Callable[[], Awaitable[object]],
    *,
    what: str,
    logger: logging.Logger = log,
) -> None:
    """A polling worker's loop by the policy: `job` every `seconds`, waited out while the
    store is down; any other fault raises, and the supervisor (cti/supervisor.py) shows
    the worker down and restarts it after its backoff."""
    while True:
        await until_stored(job, what=what, logger=logger)
        await asyncio.sleep(seconds)


async def set_aside(
    sessions: Sessions,
    source: str,
    payload: Mapping[str, Any],
    exc: BaseException,
    metrics: BereikMetrics | None = None,
    logger: logging.Logger = log,
) -> int:
    """Keep one work item the store refused, with its error; its id."""
    error = describe(exc)

    async def store() -> int:
        async with sessions() as session, session.begin():
            result = await session.execute(
                insert(SetAside)
                .values(
                    source=source,
                    payload=dict(payload),
                    error=error,
                    set_aside_at=datetime.now(UTC),
                )
                .returning(SetAside.id)
            )
            return int(result.scalar_one())

    row = await until_stored(store, what=f"a set-aside {source} item", logger=logger)
    if metrics is not None:
        metrics.work_set_aside(source)
    logger.error(
        "%s item set aside as %d (bereik events retry %d replays it): %s",
        source,
        row,
        row,
        error,
        exc_info=exc,
    )
    return row


async def store_or_set_aside(
    sessions: Sessions,
    source: str,
    payload: Mapping[str, Any],
    write: Callable[[], Awaitable[None]],
    *,
    metrics: BereikMetrics | None = None,
    logger: logging.Logger = log,
    passes: tuple[type[BaseException], ...] = (),
) -> bool:
    """Store one work item by the policy: True when written, False when set aside.
    Exceptions in `passes` are not the store's refusal (a lease lost): they go up."""
    try:
        await until_stored(write, what=f"a {source} item", logger=logger)
    except passes:
        raise
    except Exception as exc:  # the policy: kept aside with its error, never dropped
        await set_aside(sessions, source, payload, exc, metrics, logger)
        return False
    return True


@dataclass
class Replayed:
    id: int
    source: str
    ok: bool
    error: str = ""


async def listing(sessions: Sessions, *, all_rows: bool = False) -> list[SetAside]:
    """What is set aside, oldest first; with `all_rows` also what was replayed."""
    async with sessions() as session:
        query = select(SetAside).order_by(SetAside.id)
        if not all_rows:
            query = query.where(SetAside.replayed_at.is_(None))
        return list((await session.execute(query)).scalars())


async def replay(
    sessions: Sessions,
    replayers: Mapping[str, Replayer],
    ids: list[int] | None = None,
) -> list[Replayed]:
    """Write the set-aside items again, in the order they were set aside (a call's start
    before its end). A replayed item is marked, not deleted: retention purges it."""
    results: list[Replayed] = []
    # Items of one call (payload "uniqueid") are a chain: after one is refused again, the
    # later ones wait for it (an answer written before its call's row would do nothing).
    refused: set[tuple[str, str]] = set()
    for row in await listing(sessions):
        if ids and row.id not in ids:
            continue
        chain = (row.source, str(row.payload.get("uniqueid", "")))
        if chain[1] and chain in refused:
            results.append(Replayed(row.id, row.source, False, "waits for an earlier item"))
            continue
        replayer = replayers.get(row.source)
        if replayer is None:
            results.append(Replayed(row.id, row.source, False, "no replayer for this source"))
            refused.add(chain)
            continue
        try:
            await until_stored(
                functools.partial(replayer, row.payload), what=f"set-aside item {row.id}"
            )
        except Exception as exc:  # still refused: stays aside, the new error kept
            error = describe(exc)
            await _mark(sessions, row.id, error=error)
            results.append(Replayed(row.id, row.source, False, error))
            refused.add(chain)
            continue
        await _mark(sessions, row.id, replayed=True)
        results.append(Replayed(row.id, row.source, True))
    return results


async def _mark(sessions: Sessions, row: int, *, error: str = "", replayed: bool = False) -> None:
    values: dict[str, Any] = {"retries": SetAside.retries + 1}
    if replayed:
        values["replayed_at"] = datetime.now(UTC)
    else:
        values["error"] = error

    async def store() -> None:
        async with sessions() as session, session.begin():
            await session.execute(update(SetAside).where(SetAside.id == row).values(**values))

    await until_stored(store, what=f"the state of set-aside item {row}")
