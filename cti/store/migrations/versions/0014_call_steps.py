"""calls.steps: the call tracker's view of a call's journey, kept when the call ends

What the tracker knew of a call and nothing else stores: when the menu decided, each
team the call was offered to (by the menu, a blind or an attended transfer) with its
result, and each phone rung with when it answered. The rest of a journey (time in line,
hoppers, callback attempts, the survey) is read from its own table (cti/journey).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 03:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("steps")
