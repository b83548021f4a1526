"""an index on hoppers.call_uniqueid, for the norm's "left out" test per call

The norm figures (cti/calls/norms.py `call_norm`: the board's gauges every 5 s, the
reports screen, `bereik report`) leave out a call of which an acquisitie hopper was made:
a correlated EXISTS on hoppers by call_uniqueid for every answered or abandoned call of
the last 28 days. Without an index that is a scan of every hopper for every such call: on
the bench's data set (101,181 hoppers) 481 calls took 8.4 s a pass, every 5 s, a core of
`bereik serve` gone and the call path's CPU per call doubled (bench/README.md); with the
index 0.16-0.28 s. It grows with calls × hoppers: a month of a contact centre's calls
would never finish a pass.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 11:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hoppers_call_uniqueid", "hoppers", ["call_uniqueid"])


def downgrade() -> None:
    op.drop_index("ix_hoppers_call_uniqueid", table_name="hoppers")
