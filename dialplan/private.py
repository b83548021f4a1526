"""Files with secrets or personal data are never readable by other users of the machine.

Rendered Asterisk configuration (AMI secret, phone passwords, the FastAGI secret), the
SQLite database with its -wal and -shm files, recordings and spoken numbers: files 0600,
their directories 0700. `bereik` also sets the process umask to 077 at start, so what
it (and an Asterisk it starts) creates later is private too.
"""

from __future__ import annotations

import contextlib
import os
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
    """Write a file that is 0600 from the first byte (no window in which it is 0644)."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)  # an existing file keeps its mode otherwise
        handle.write(data)


def restrict(path: Path) -> None:
    """Make an existing file 0600 (a file another program created); missing is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)
