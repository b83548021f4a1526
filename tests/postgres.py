"""A PostgreSQL 15 cluster of the tests' own: initdb in a work directory, a free port.

No system service is used or needed. initdb refuses to run as root, so the cluster runs
as the ``postgres`` user that Debian's package creates; its unix socket lives in the
cluster's directory. Each test gets its own database in the one cluster, so tests never
see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def _as_postgres(*command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, *command],
        check=True,
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


class PostgresCluster:
    """One running cluster; `new_database()` gives a fresh database's URL."""

    def __init__(self, port: int) -> None:
        if not (BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL 15 is not installed ({BIN}): run the tests through scripts/test"
            )
        self.port = port
        # Not under pytest's tmp dir: that is root's alone, and the server runs as postgres.
        self.directory = Path(tempfile.mkdtemp(prefix="bereik-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.directory, USER)
        _as_postgres(
            str(BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        self.start()

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # Small settings: a test cluster on a shared 2-core machine, many short databases.
        # fsync stays on: the tests check that nothing committed is lost across a restart.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        _as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def new_database(self) -> str:
        name = f"bereik_{secrets.token_hex(6)}"
        engine = create_engine(self.sync_url(self.admin_url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    @staticmethod
    def sync_url(url: str) -> str:
        """A URL for the tests' own synchronous reads (psycopg)."""
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def wait_accepting(cluster: PostgresCluster, timeout: float = 30) -> None:
    """Until the cluster accepts connections (after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _as_postgres(str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port), "-q")
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
