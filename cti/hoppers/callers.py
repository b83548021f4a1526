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

from sqlalchemy import Connection, bindparam, func, select

from cti.store.models import Hopper

FULL_READ_SECONDS = 60.0
LOOKBACK = 100


# Built once (their compiled form is cached by the engine; see cti/hoppers/service.py).
_ALL_OPEN = select(Hopper.id, Hopper.caller).where(Hopper.status == "open")
_HIGHEST = select(func.max(Hopper.id))
_OPEN_SINCE = select(Hopper.id, Hopper.caller).where(
    Hopper.id > bindparam("p_after"), Hopper.status == "open"
)


@dataclass(frozen=True)
class OpenCallers:
    callers: frozenset[str]
    highest_id: int
    read_at: float  # monotonic time of the last full read


def open_callers(conn: Connection, *, previous: OpenCallers | None) -> OpenCallers:
    """The cache's loader (cti/store/cache.py): in full, or what was added since."""
    now = time.monotonic()
    if previous is None or now - previous.read_at > FULL_READ_SECONDS:
        rows = conn.execute(_ALL_OPEN).all()
        highest = conn.execute(_HIGHEST).scalar()
        return OpenCallers(frozenset(caller for _, caller in rows), highest or 0, now)
    lookback = 0 if conn.dialect.name == "sqlite" else LOOKBACK
    rows = conn.execute(_OPEN_SINCE, {"p_after": previous.highest_id - lookback}).all()
    if not rows:
        return previous
    return OpenCallers(
        previous.callers | {caller for _, caller in rows},
        max(previous.highest_id, *(hopper_id for hopper_id, _ in rows)),
        previous.read_at,
    )
