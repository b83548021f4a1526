"""the citizen's voice: question recordings, survey answers, what announcements save

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cti.store.models import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "question_recordings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("hopper_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_question_recordings_call_uniqueid", "question_recordings", ["call_uniqueid"]
    )
    op.create_index("ix_question_recordings_hopper_id", "question_recordings", ["hopper_id"])
    op.create_index("ix_question_recordings_created_at", "question_recordings", ["created_at"])
    op.create_table(
        "survey_answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("question", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("call_uniqueid", "question"),
    )
    op.create_index("ix_survey_answers_call_uniqueid", "survey_answers", ["call_uniqueid"])
    op.create_index("ix_survey_answers_team_id", "survey_answers", ["team_id"])
    op.create_index("ix_survey_answers_at", "survey_answers", ["at"])
    op.create_table(
        "announcement_hearings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item", sa.String(length=48), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("call_uniqueid", "item"),
    )
    op.create_index("ix_announcement_hearings_item", "announcement_hearings", ["item"])
    op.create_index("ix_announcement_hearings_at", "announcement_hearings", ["at"])


def downgrade() -> None:
    op.drop_table("announcement_hearings")
    op.drop_table("survey_answers")
    op.drop_table("question_recordings")
