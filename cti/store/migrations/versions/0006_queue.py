"""the KCC waiting line: agent states, one row per caller in line, virtual holds

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cti.store.models import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_states",
        sa.Column("extension", sa.String(length=32), primary_key=True),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("signed_in", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.String(length=32), nullable=False),
        sa.Column("on_call_since", UtcDateTime(), nullable=True),
        sa.Column("wrapup_until", UtcDateTime(), nullable=True),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
    )
    op.create_table(
        "queue_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False, unique=True),
        sa.Column("caller", sa.String(length=80), nullable=False),
        sa.Column("joined_at", UtcDateTime(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("left_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=32), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
    )
    op.create_table(
        "virtual_holds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=False, unique=True),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("arrived_at", UtcDateTime(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", UtcDateTime(), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("reached_at", UtcDateTime(), nullable=True),
        sa.Column("hopper_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_virtual_holds_status", "virtual_holds", ["status"])
    op.create_index("ix_virtual_holds_requested_at", "virtual_holds", ["requested_at"])
    op.create_index("ix_queue_calls_queue", "queue_calls", ["queue"])
    op.create_index("ix_queue_calls_joined_at", "queue_calls", ["joined_at"])
    op.create_index("ix_queue_calls_outcome", "queue_calls", ["outcome"])


def downgrade() -> None:
    op.drop_table("virtual_holds")
    op.drop_table("queue_calls")
    op.drop_table("agent_states")
