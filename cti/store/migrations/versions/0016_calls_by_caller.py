"""calls by caller: an index on (caller, started_at)

A caller's earlier contacts (the agent's popup, cti/calls/history.py) and the first-line
figures' later calls of today's numbers (cti/reports/firstline.py) look calls up by number.
Without an index, a number that never called before read every call of the retention
period (`retention.call_days`), newest first, on each answered call's popup.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 19:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_calls_caller_started", "calls", ["caller", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_caller_started", table_name="calls")
