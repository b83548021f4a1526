"""The norm's "left out" test finds a call's hoppers by index, not by reading them all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from cti.calls.norms import call_norm
from cti.store.db import migrate_async
from cti.store.models import Call


async def test_the_norm_looks_up_a_calls_acquisitie_hopper_by_index(tmp_path: Path) -> None:
    path = tmp_path / "bereik.db"
    await migrate_async(f"sqlite:///{path}")
    _, _, left_out = call_norm(5.0)
    query = select(Call.uniqueid).where(~left_out)
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with sqlite3.connect(path) as connection:
        plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}"))
    # Once per answered call, every 5 s: a scan of every hopper made the gauges take
    # seconds a pass on 100,000 hoppers (migration 0011).
    assert "USING INDEX ix_hoppers_call_uniqueid" in plan, plan
