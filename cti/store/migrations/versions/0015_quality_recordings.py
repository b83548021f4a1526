"""question_recordings.kind and .team_id: quality recordings beside the callers' questions

A quality recording (cti/voice/quality.py) is a share of a team's or the KCC's answered
calls, recorded with MixMonitor after the caller heard it may be and did not refuse. It is
stored as the question recordings are (same folder, 0600, same play route), so the same
row holds it: ``kind`` tells them apart ("question" or "quality"), ``team_id`` says whose
lead may hear it. Retention keeps a quality recording ``retention.quality_days``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("question_recordings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="question")
        )
        batch_op.add_column(sa.Column("team_id", sa.String(32), nullable=False, server_default=""))
        batch_op.create_index("ix_question_recordings_kind", ["kind"])


def downgrade() -> None:
    with op.batch_alter_table("question_recordings", schema=None) as batch_op:
        batch_op.drop_index("ix_question_recordings_kind")
        batch_op.drop_column("team_id")
        batch_op.drop_column("kind")
