"""A caller's earlier contacts are found by index, not by reading every call kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.dialects import sqlite

from cti.calls.history import earlier_contacts
from cti.store.db import migrate_async


async def test_the_popups_earlier_contacts_are_read_by_the_callers_index(tmp_path: Path) -> None:
    path = tmp_path / "bereik.db"
    await migrate_async(f"sqlite:///{path}")
    query = earlier_contacts("0612345678", "1796669201.11432")
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with sqlite3.connect(path) as connection:
        plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}"))
    # Once per answered call: by started_at alone, a first-time caller's popup read all
    # of the retention period's calls (90 days of them by default).
    assert "USING INDEX ix_calls_caller_started" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # newest first from the index, no sort
