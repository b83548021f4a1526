"""Files with secrets or personal data are never readable by other users of the machine.

Rendered Asterisk configuration (AMI secret, phone passwords, the FastAGI secret), the
SQLite database with its -wal and -shm files, recordings and spoken numbers: files 0600,
their directories 0700. `bereik` also sets the process umask to 077 at start, so what
it (and an Asterisk it starts) creates later is private too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create the directory (and missing parents, 0700) or make an existing one 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file that is 0600 from the first byte (no window in which it is 0644), whole
    or not at all: the content goes to a new file beside it that then replaces it, so a
    reader at the same moment (another `bereik` process loading the secrets, Asterisk
    reloading its configuration) sees the old file or the new one, never a part."""
    data = content.encode() if isinstance(content, str) else content
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file (beside it, 0600) meanwhile: for a
    read-modify-write of `path` that several processes may do at once."""
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def restrict(path: Path) -> None:
    """Make an existing file 0600 (a file another program created); missing is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)
