"""one owner of the AMI call tracking per Asterisk: a lease with a fencing number

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_leases",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("beat", sa.Integer(), nullable=False),
        sa.Column("written_through", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tracking_leases")
