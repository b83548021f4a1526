"""Fixtures shared by the end-to-end and resilience suites.

An exchange's store is SQLite, and PostgreSQL 15 too for the tests marked
`@on_both_backends` (tests/support/backends.py): each such test runs once on each, in the
same worker pool, on a fresh database of the worker's own cluster (tests/postgres.py).
``BEREIK_TEST_DB=postgres`` puts every other test's exchanges on PostgreSQL as well.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from bench import exchange as harness
from cti.store.db import migrate
from dialplan import asterisk
from tests.postgres import PostgresCluster
from tests.support.backends import BACKENDS

# Property tests check what is true, not how fast: hypothesis' default 200 ms deadline per
# example turns a busy machine (tests run two at once) into failures of correct code.
settings.register_profile("bereik", deadline=None)
settings.load_profile("bereik")

# tests.no_skips: a skipped test fails the run under scripts/test and CI.
pytest_plugins = ["pytester", "tests.no_skips"]


# Each suite's marker comes from its directory (a `pytestmark` in a conftest marks nothing):
# `-m "not e2e"` selects the unit tests alone. The resilience tests need the same real parts
# as the end-to-end tests, so they carry both markers.
SUITE_MARKERS = {"e2e": ("e2e",), "resilience": ("e2e", "resilience")}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if TESTS not in path.parents:
            continue
        for marker in SUITE_MARKERS.get(path.relative_to(TESTS).parts[0], ()):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def installation() -> asterisk.Installation:
    """Asterisk as `bereik asterisk install` provides it (cached after the first run)."""
    for tool in ("sipp",):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the tests through scripts/test")
    return asterisk.install(progress=lambda line: None)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """This run's own PostgreSQL 15 cluster, started on first use and removed at the end."""
    cluster = PostgresCluster(harness.free_port())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store of the exchanges this test makes: its parameter under `@on_both_backends`,
    else BEREIK_TEST_DB (sqlite, the default, or postgres). On PostgreSQL each exchange
    gets a fresh database of this worker's cluster (xdist workers are processes: each has
    its own cluster, on a port of its own, and random database names)."""
    chosen = getattr(request, "param", None) or os.environ.get("BEREIK_TEST_DB", "sqlite")
    if chosen not in BACKENDS:
        pytest.fail(f"BEREIK_TEST_DB={chosen!r}: choose one of {', '.join(BACKENDS)}")
    if chosen == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        harness.new_postgres_database = cluster.new_database
    try:
        yield chosen
    finally:
        harness.new_postgres_database = None


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database at the newest Alembic revision, on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    return url
