"""hopper events: the call that made or repeated a hopper

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A repeat contact is linked to the open hopper and makes no hopper of its own; the
    # call tracker finds what became of such a call through the event that names it.
    with op.batch_alter_table("hopper_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("call_uniqueid", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.create_index("ix_hopper_events_call_uniqueid", ["call_uniqueid"])


def downgrade() -> None:
    with op.batch_alter_table("hopper_events", schema=None) as batch_op:
        batch_op.drop_index("ix_hopper_events_call_uniqueid")
        batch_op.drop_column("call_uniqueid")
