"""callback attempts: why an attempt ended (dial status, hangup cause)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:58:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The outcome alone cannot tell "the member did not pick up" from "the citizen's
    # number does not exist"; only the latter counts towards closing as unreachable.
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("detail", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.drop_column("detail")
