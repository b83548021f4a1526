"""security: revocable sessions, expiring API tokens, recording PIN lockout per extension

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 18:40:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from cti.store.models import UtcDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_token_expires_at", UtcDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )
    # Tokens issued before expiry existed get the standard 90 days from the upgrade.
    users = sa.table(
        "users",
        sa.column("api_token_hash", sa.String()),
        sa.column("api_token_expires_at", UtcDateTime()),
    )
    op.execute(
        users.update()
        .where(users.c.api_token_hash != "")
        .values(api_token_expires_at=datetime.now(UTC) + timedelta(days=90))
    )
    op.create_table(
        "pin_locks",
        sa.Column("extension", sa.String(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("last_failure_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("extension"),
    )


def downgrade() -> None:
    op.drop_table("pin_locks")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_version")
        batch_op.drop_column("api_token_expires_at")
