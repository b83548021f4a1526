"""set_aside: work a feature could not store, kept with its error (cti/store/faults.py)

A call event, a queue or virtual-hold event, a callback or a mail that the database
refused for a reason other than being down (a value the schema refuses, a fault of ours)
is kept here with the error, counted on bereik_set_aside_total and alerted on, instead
of being retried forever (blocking the work behind it) or dropped. `bereik events list`
shows it, `bereik events retry` replays it after the fault is fixed. It holds what the
work held (callers' numbers): retention purges it with the calls (cti/retention.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cti.store.models import UtcDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "set_aside",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("set_aside_at", UtcDateTime(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("replayed_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_set_aside_source", "set_aside", ["source"])
    op.create_index("ix_set_aside_set_aside_at", "set_aside", ["set_aside_at"])


def downgrade() -> None:
    op.drop_index("ix_set_aside_set_aside_at", table_name="set_aside")
    op.drop_index("ix_set_aside_source", table_name="set_aside")
    op.drop_table("set_aside")
