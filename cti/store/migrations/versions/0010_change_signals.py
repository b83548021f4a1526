"""change signals on announcements and hoppers, for the call path's caches

The IVR answers its per-call look-ups (the active announcements, whether the caller has
an open hopper) from memory (cti/store/cache.py) and must learn of every change to those
tables, whoever makes it: a web request, the command line, another process, raw SQL.
So the database itself signals, from triggers:

* SQLite: a counter per table in `change_counters`, bumped by row triggers in the writing
  transaction; each process reads it through a read-only connection of its own (a few
  microseconds, no thread hop) before trusting its cache.
* PostgreSQL: `pg_notify('bereik_changes', <table>)` from statement triggers, delivered at
  commit to every process that listens (no shared row to lock between writers).

A later migration that recreates `hoppers` or `announcements` on SQLite (batch mode) drops
their triggers and must create them again (tests/unit/test_change_signals.py fails).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("announcements", "hoppers")
OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_table(
            "change_counters",
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("value", sa.Integer, nullable=False, server_default="0"),
        )
        for table in TABLES:
            op.execute(f"INSERT INTO change_counters (name, value) VALUES ('{table}', 0)")
            for operation in OPERATIONS:
                op.execute(
                    f"CREATE TRIGGER {table}_changed_{operation.lower()} AFTER {operation} "
                    f"ON {table} BEGIN UPDATE change_counters SET value = value + 1 "
                    f"WHERE name = '{table}'; END"
                )
        return
    op.execute(
        "CREATE FUNCTION bereik_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('bereik_changes', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bereik_notify_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for operation in OPERATIONS:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_changed_{operation.lower()}")
        op.drop_table("change_counters")
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS bereik_notify_change()")
