"""The store of a test's exchanges: SQLite, and PostgreSQL 15 for the tests whose SQL
differs between the two (several `bereik serve` share PostgreSQL in production).

`@on_both_backends` runs a test once on each: the autouse fixture `backend`
(tests/conftest.py) gives every exchange the test makes a fresh database of this worker's
own PostgreSQL cluster (tests/postgres.py).
"""

from __future__ import annotations

import pytest

BACKENDS = ("sqlite", "postgres")

on_both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
