"""Fixtures shared by the end-to-end and resilience suites.

``BEREIK_TEST_DB=postgres`` runs the exchanges of the chosen suites on PostgreSQL 15 (a
cluster the tests start themselves, see tests/postgres.py); the default is SQLite.
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

BACKENDS = ("sqlite", "postgres")

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


@pytest.fixture(scope="session", autouse=True)
def database_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store the exchanges of this run use (BEREIK_TEST_DB: sqlite or postgres)."""
    backend = os.environ.get("BEREIK_TEST_DB", "sqlite")
    if backend not in BACKENDS:
        pytest.fail(f"BEREIK_TEST_DB={backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        harness.new_postgres_database = cluster.new_database
    try:
        yield backend
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
