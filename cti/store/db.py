"""Opening the database: one async engine per process, migrations applied by Alembic."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Table, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dialplan.private import FILE_MODE, private_dir, restrict

MIGRATIONS = Path(__file__).parent / "migrations"


def _driver_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        from asyncpg import exceptions as pg
    except ImportError:  # the postgres extra is not installed: SQLite only
        return ()
    # Raised as they are (not wrapped by SQLAlchemy) when a connection is made while the
    # server restarts: "shutting down", "starting up", "terminating connection".
    return (pg.PostgresConnectionError, pg.OperatorInterventionError, pg.InterfaceError)


# What a store that is down, restarting or failing over raises: the caller's transaction
# did not happen and may be tried again once the store is back.
STORE_DOWN: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
    # No free connection in the pool within its timeout: a long lock, not our statement.
    PoolTimeout,
    *_driver_connection_errors(),
)
# SQLite's OperationalError also says "no such table" or "no such column" (a schema that
# is not what we expect: waiting changes nothing). These messages are a file that is
# busy, locked or briefly unreachable: worth waiting for.
SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "unable to open database file",
    "disk i/o error",
    "attempt to write a readonly database",
)
# SQLSTATE 25006: a write reached a read-only server (a PostgreSQL standby during a
# failover, before the application's address points at the new primary).
READ_ONLY_SQLSTATE = "25006"


def store_down(exc: BaseException) -> bool:
    """True when `exc` says the store is unreachable, locked, or read-only for a failover,
    not that our statement was wrong.

    The driver's own error may come wrapped (SQLAlchemy's DBAPIError around asyncpg's
    "the database system is shutting down"), so the chain of causes is looked at too.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sqlite3.OperationalError):
            return any(text in str(seen).lower() for text in SQLITE_TRANSIENT)
        if isinstance(seen, OperationalError) and isinstance(seen.orig, sqlite3.Error):
            seen = seen.orig  # decided by SQLite's own message, next round
            continue
        if isinstance(seen, STORE_DOWN):
            return True
        if READ_ONLY_SQLSTATE in (getattr(seen, "sqlstate", None), getattr(seen, "pgcode", None)):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


Sessions = async_sessionmaker[AsyncSession]


def async_url(url: str) -> str:
    """The configured URL with an asyncio driver: sqlite -> aiosqlite, postgresql -> asyncpg."""
    scheme, sep, rest = url.partition("://")
    if "+" in scheme:
        return url
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}[scheme]
    return f"{driver}{sep}{rest}"


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_directory(url)
        # One connection per process: SQLite has one writer at a time anyway, and a queue
        # in asyncio is fair, while connections racing for the file lock are not. With the
        # default pool, 20 calls a second left some writers polling the busy handler past
        # its 5 s ("database is locked"): hoppers fell to the KCC fallback
        # (tests/resilience/test_sustained_load.py). Code must therefore never hold one
        # session while opening another.
        engine = create_async_engine(url, connect_args={"timeout": 5}, pool_size=1, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


def insert_or_skip(bind: AsyncSession | Connection, table: Table, index: str) -> Any:
    """An INSERT into `table` that skips a row whose `index` value exists already (one
    statement, no IntegrityError and rollback), on SQLite and PostgreSQL alike."""
    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    insert = postgresql_insert if dialect.name == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=[index])


def _ensure_sqlite_directory(url: str) -> None:
    """The database's directory (0700 if we make it) and the file itself 0600, before
    SQLite opens it: SQLite gives the -wal and -shm files the database file's mode."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if path and path != ":memory:":
        database = Path(path)
        if not database.parent.exists():
            private_dir(database.parent)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        for suffix in ("", "-wal", "-shm", "-journal"):
            restrict(Path(f"{database}{suffix}"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web pages read while a call handler writes; the busy timeout turns a
    # briefly locked file into a short wait instead of an error on the call path.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(url))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (safe to run on every start)."""
    if url.startswith("sqlite"):
        _ensure_sqlite_directory(async_url(url))
    command.upgrade(alembic_config(url), "head")


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)
