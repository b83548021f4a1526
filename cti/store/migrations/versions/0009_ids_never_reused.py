"""ids never reused on SQLite: hoppers, announcements and question recordings

A purged hopper's id given to a new one made its first mail's outbox key
("hopper-N-created") collide with the purged hopper's sent mail: the new hopper could not
be stored. An id also names its hopper in links, mails and the audit log. SQLite reuses
the highest rowid once deleted unless the table is AUTOINCREMENT, which only a new table
can be: each is copied into one (PostgreSQL's sequences never reuse; nothing to do).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 02:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("hoppers", "announcements", "question_recordings")


def upgrade() -> None:
    _recreate(autoincrement=True)


def downgrade() -> None:
    _recreate(autoincrement=False)


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
