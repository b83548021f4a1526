"""The Alembic migrations make exactly the schema the models describe, on SQLite and on
PostgreSQL: a column, index, type, nullability or server default in one and not the
other fails here (the models are what the code queries, the migrations what every
installed database has)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Float, create_engine
from sqlalchemy.types import TypeEngine

from cti.store.models import Base
from tests.postgres import PostgresCluster

# Tables the migrations make that no model maps, on purpose: SQLite's change counters,
# written only by the triggers of migration 0010 and read by cti/store/cache.py.
NOT_MODELS = {"change_counters"}


def unquoted(default: str) -> str:
    """A rendered SQL default without its parentheses and one pair of quotes."""
    text = default.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text


def defaults_differ(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """SQLite reflects the empty default as '' and alembic's comparison cannot unquote an
    empty string, so it reports every `server_default=""` as changed there; compared here
    as text. PostgreSQL: alembic's own comparison (None)."""
    if context.dialect.name != "sqlite":
        return None
    if inspected_default is None or rendered_metadata_default is None:
        return (inspected_default is None) != (rendered_metadata_default is None)
    return unquoted(inspected_default) != unquoted(rendered_metadata_default)


def types_differ(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """SQLite stores FLOAT and DOUBLE alike (REAL, 8 bytes): a `float` column of the models
    (Double) made as sa.Float by a migration is the same column there. Everything else:
    alembic's comparison."""
    if context.dialect.name == "sqlite":
        if isinstance(inspected_type, Float) and isinstance(metadata_type, Float):
            return False
    return None


def differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": types_differ,
                    "compare_server_default": defaults_differ,
                    "include_name": lambda name, kind, parent: (
                        not (kind == "table" and name in NOT_MODELS)
                    ),
                },
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_migrations_make_exactly_the_models_schema(store_url: str) -> None:
    """`store_url`: a database migrated to the newest revision, on each backend."""
    url = PostgresCluster.sync_url(store_url) if store_url.startswith("postgresql") else store_url
    assert differences(url) == []


def test_a_column_the_models_lack_is_a_difference(store_url: str) -> None:
    """The comparison sees what it must: a column added behind the models' back."""
    url = PostgresCluster.sync_url(store_url) if store_url.startswith("postgresql") else store_url
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE hoppers ADD COLUMN stray VARCHAR(8)")
    finally:
        engine.dispose()
    assert [d[0] for d in differences(url)] == ["remove_column"]
