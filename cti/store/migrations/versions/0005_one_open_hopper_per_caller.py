"""hoppers: at most one open hopper per caller and team, kept by the database

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_OPEN_HOPPER = "status = 'open' AND counts_for_norm"


def upgrade() -> None:
    # Repeat-contact linking was serialised by a lock inside one process; two processes
    # could each make a hopper for one caller. Such pairs must be settled by a person
    # (close or reassign one) before the index can hold: say which, change nothing.
    twins = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT caller, team_id, count(*) AS n FROM hoppers "
                f"WHERE {ONE_OPEN_HOPPER} GROUP BY caller, team_id HAVING count(*) > 1"
            )
        )
        .all()
    )
    if twins:
        listed = ", ".join(f"{row.caller} ({row.team_id}): {row.n}" for row in twins)
        raise RuntimeError(
            "several open hoppers for one caller and team; close or reassign all but one "
            f"of each, then start again: {listed}"
        )
    op.create_index(
        "uq_hoppers_one_open_per_caller",
        "hoppers",
        ["caller", "team_id"],
        unique=True,
        sqlite_where=sa.text(ONE_OPEN_HOPPER),
        postgresql_where=sa.text(ONE_OPEN_HOPPER),
    )


def downgrade() -> None:
    op.drop_index("uq_hoppers_one_open_per_caller", table_name="hoppers")
