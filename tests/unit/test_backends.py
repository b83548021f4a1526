"""The store of a test's exchanges follows the test's `backend` parameter."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import exchange as harness
from tests.postgres import PostgresCluster
from tests.support.backends import on_both_backends


@on_both_backends
def test_each_exchange_gets_a_fresh_database_of_the_tests_backend(
    backend: str, tmp_path: Path
) -> None:
    first = harness.test_database_url(tmp_path / "a")
    second = harness.test_database_url(tmp_path / "b")
    assert first != second
    if backend == "sqlite":
        assert first.startswith("sqlite:///") and second.startswith("sqlite:///")
        return
    assert first.startswith("postgresql://") and second.startswith("postgresql://")
    engine = create_engine(PostgresCluster.sync_url(first))
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert tables == 0  # empty: each exchange migrates its own


def test_a_test_without_the_parameter_is_on_the_runs_store(backend: str, tmp_path: Path) -> None:
    """SQLite, unless BEREIK_TEST_DB=postgres puts the whole run on PostgreSQL."""
    assert backend == os.environ.get("BEREIK_TEST_DB", "sqlite")
    scheme = "sqlite:///" if backend == "sqlite" else "postgresql://"
    assert harness.test_database_url(tmp_path).startswith(scheme)
