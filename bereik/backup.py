"""`bereik backup` and `bereik restore`: one archive that brings an exchange back.

The archive (a gzipped tar, mode 0600: it holds callers' numbers and every secret) has:

* ``database.sqlite`` (SQLite's online backup: consistent while `bereik serve` writes) or
  ``database.pgdump`` (``pg_dump --format=custom``);
* ``config.toml``, the configuration it was made with;
* ``instance/``: the generated secrets (``secrets.json``: the phones' SIP passwords, AMI,
  FastAGI), the web's session key and the second factor's key, the callers' recorded
  questions and the announcements' audio. Spoken prompts are left out: they are made
  again at start-up;
* ``manifest.json``: when, from which database kind, and each file's SHA-256.

`bereik restore ARCHIVE --config PATH` on a fresh machine writes the configuration to PATH
(when there is none yet), the database (refusing one that already has calls or hoppers,
unless ``--force``) and the instance files, then migrates; `bereik asterisk render` and
`bereik serve` then run the exchange with the same users, hoppers and clocks, and the
phones register with the passwords they had.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cti.services import instance_dir
from cti.store.db import async_url, migrate
from dialplan.config import Config, load
from dialplan.private import FILE_MODE, private_dir, write_private

FORMAT = 1
# What of the instance directory is kept (relative paths; a directory with all below it).
INSTANCE_FILES = (
    "secrets.json",
    "web-session.key",
    "second-factor.key",
    "recordings",
    "sounds/announcements",
)


class BackupError(Exception):
    pass


def register(commands: Any) -> None:
    backup = commands.add_parser("backup", help="one archive of the database, secrets, files")
    backup.add_argument("--config", required=True, type=Path)
    backup.add_argument(
        "--out", type=Path, help="the archive (default: bereik-backup-<time>.tar.gz)"
    )
    backup.set_defaults(func=cmd_backup)
    restore = commands.add_parser("restore", help="bring an exchange back from an archive")
    restore.add_argument("archive", type=Path)
    restore.add_argument("--config", required=True, type=Path, help="written when missing")
    restore.add_argument(
        "--force", action="store_true", help="replace a database that has calls or hoppers"
    )
    restore.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    config = load(args.config)
    out = args.out or Path(f"bereik-backup-{datetime.now(UTC):%Y%m%d-%H%M%S}.tar.gz")
    try:
        manifest = backup(config, args.config, out)
    except BackupError as exc:
        print(f"bereik backup: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(manifest['files'])} files, database {manifest['database']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        restored = restore(args.archive, args.config, force=args.force)
    except BackupError as exc:
        print(f"bereik restore: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored {args.archive} (made {restored['created_at']}): database and "
        f"{len(restored['files'])} files; now `bereik asterisk render` and `bereik serve`"
    )
    return 0


# -- backup ----------------------------------------------------------------------------


def backup(config: Config, config_path: Path, out: Path) -> dict[str, Any]:
    """Write the archive to `out` (through a temporary file: never half an archive)."""
    home = instance_dir(config)
    url = config.database.url
    with tempfile.TemporaryDirectory(prefix="bereik-backup-") as tmp:
        work = Path(tmp)
        if url.startswith("sqlite"):
            name = "database.sqlite"
            _sqlite_backup(_sqlite_path(url), work / name)
        else:
            name = "database.pgdump"
            _run(["pg_dump", "--format=custom", f"--dbname={_plain(url)}", "-f", str(work / name)])
        members: list[tuple[str, Path]] = [(name, work / name), ("config.toml", config_path)]
        for relative in INSTANCE_FILES:
            source = home / relative
            if source.is_dir():
                members += [
                    (f"instance/{path.relative_to(home)}", path)
                    for path in sorted(source.rglob("*"))
                    if path.is_file()
                ]
            elif source.is_file():
                members.append((f"instance/{relative}", source))
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "sqlite" if name.endswith("sqlite") else "postgresql",
            "files": {arcname: _sha256(path) for arcname, path in members},
        }
        partial = out.with_name(f".{out.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode = len(body), FILE_MODE
            archive.addfile(info, io.BytesIO(body))
            for arcname, path in members:
                archive.add(path, arcname=arcname, recursive=False)
        partial.replace(out)
    return manifest


def _sqlite_backup(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while other connections write."""
    if not source.exists():
        raise BackupError(f"no database at {source}")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


# -- restore ---------------------------------------------------------------------------


def restore(archive_path: Path, config_path: Path, *, force: bool = False) -> dict[str, Any]:
    with (
        tarfile.open(archive_path, "r:gz") as archive,
        tempfile.TemporaryDirectory(prefix="bereik-restore-") as tmp,
    ):
        work = Path(tmp)
        archive.extractall(work, filter="data")
        manifest: dict[str, Any] = json.loads((work / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{archive_path}: unknown archive format {manifest.get('format')}")
        for arcname, digest in manifest["files"].items():
            if _sha256(work / arcname) != digest:
                raise BackupError(f"{archive_path}: {arcname} is damaged (checksum)")
        if not config_path.exists():
            write_private(config_path, (work / "config.toml").read_text())
        config = load(config_path)
        _restore_database(config, work, manifest["database"], force)
        home = instance_dir(config)
        private_dir(home)
        for arcname in manifest["files"]:
            if not arcname.startswith("instance/"):
                continue
            target = home / arcname.removeprefix("instance/")
            private_dir(target.parent)
            shutil.copyfile(work / arcname, target)
            os.chmod(target, FILE_MODE)
        migrate(config.database.url)
        return manifest


def _restore_database(config: Config, work: Path, kind: str, force: bool) -> None:
    url = config.database.url
    if kind != ("sqlite" if url.startswith("sqlite") else "postgresql"):
        raise BackupError(
            f"the archive holds a {kind} database; database.url is {url.split(':', 1)[0]}"
        )
    if _in_use(url) and not force:
        raise BackupError(
            "the database already has calls or hoppers; restore onto a fresh one, or --force"
        )
    if kind == "sqlite":
        target = _sqlite_path(url)
        private_dir(target.parent)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        with sqlite3.connect(work / "database.sqlite") as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        os.chmod(target, FILE_MODE)
    else:
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                f"--dbname={_plain(url)}",
                str(work / "database.pgdump"),
            ]
        )


def _in_use(url: str) -> bool:
    """Whether the target database holds an exchange's work already."""
    if url.startswith("sqlite"):
        if not _sqlite_path(url).exists():
            return False
        engine = create_engine(_plain(url))
        try:
            with engine.connect() as connection:
                return _has_work(connection)
        finally:
            engine.dispose()
    # PostgreSQL through the store's own driver (asyncpg): the machine has no other.
    return asyncio.run(_pg_in_use(async_url(url)))


async def _pg_in_use(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_has_work)
    finally:
        await engine.dispose()


def _has_work(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return any(
        connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None
        for table in ("calls", "hoppers")
        if table in tables
    )


# -- helpers ---------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"database.url {url!r} names no file")
    return Path(database)


def _plain(url: str) -> str:
    """The URL without an asyncio driver (pg_dump, pg_restore and a blocking engine)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed (postgresql-client)") from None
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[:500]}")
