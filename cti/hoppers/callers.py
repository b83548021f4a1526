"""Who has an open hopper: the IVR asks on every call, so the answer is kept in memory.

`OpenCallers` is a cache value (cti/store/cache.py): the callers with an open hopper,
read in full once a minute and, in between, after each change to the hoppers table, only
the hoppers added since. Closing a hopper does not remove its caller until the next full
read; that errs on the safe side (the IVR then asks the database about that caller).
Ids grow with each new hopper. On SQLite, one writer at a time commits them in order, so
the additions are the ids above the highest seen; on PostgreSQL a transaction may commit
after a later id's, so they are read from LOOKBACK ids before it. (The IVR re-reads after
every new hopper: on SQLite that read is one row, not a hundred.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.store.models import Hopper

FULL_READ_SECONDS = 60.0
LOOKBACK = 100


@dataclass(frozen=True)
class OpenCallers:
    callers: frozenset[str]
    highest_id: int
    read_at: float  # monotonic time of the last full read


async def open_callers(session: AsyncSession, previous: OpenCallers | None) -> OpenCallers:
    now = time.monotonic()
    if previous is None or now - previous.read_at > FULL_READ_SECONDS:
        rows = (
            await session.execute(select(Hopper.id, Hopper.caller).where(Hopper.status == "open"))
        ).all()
        highest = await session.scalar(select(func.max(Hopper.id)))
        return OpenCallers(frozenset(caller for _, caller in rows), highest or 0, now)
    lookback = 0 if session.get_bind().dialect.name == "sqlite" else LOOKBACK
    rows = (
        await session.execute(
            select(Hopper.id, Hopper.caller).where(
                Hopper.id > previous.highest_id - lookback, Hopper.status == "open"
            )
        )
    ).all()
    if not rows:
        return previous
    return OpenCallers(
        previous.callers | {caller for _, caller in rows},
        max(previous.highest_id, *(hopper_id for hopper_id, _ in rows)),
        previous.read_at,
    )
