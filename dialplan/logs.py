"""Asterisk's log files are kept as long as the calls they name (retention.call_days).

full.log, messages.log and the security log name callers by number. In production the
system's logrotate rotates them daily and deletes rotations past the term, with the file
`bereik asterisk render` writes from deploy/logrotate (`logrotate_conf`). `bereik up`,
which runs without a system logrotate, does the same itself once a day (`prune_logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2

log = logging.getLogger("bereik.logs")

LOGROTATE_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "logrotate"
LOGROTATE_FILE = "logrotate.conf"
# Written by our own process (Asterisk's stdout with `-f`, errors only), held open by it.
NOT_ROTATED = ("stdout.log",)
CHECK_SECONDS = 3600.0


def logrotate_conf(log_dir: Path, conf_path: Path, days: int) -> str:
    """The logrotate file for an Asterisk whose logs are in `log_dir` (on this machine)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(LOGROTATE_TEMPLATE),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("bereik-asterisk.j2").render(
        log_dir=log_dir, conf_path=conf_path, days=days
    )


def prune_logs(
    log_dir: Path, days: int, now: datetime, reopen: Callable[[], object] | None = None
) -> None:
    """Rotate today's logs (once a day: `<name>.<yyyymmdd>`, 0600) and delete rotations
    older than `days`. `reopen` asks Asterisk to open new files (`logger reload`)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d")
    rotated = False
    for path in sorted(log_dir.glob("*.log")):
        target = path.with_name(f"{path.name}.{stamp}")
        if path.name in NOT_ROTATED or target.exists() or path.stat().st_size == 0:
            continue
        path.rename(target)
        target.chmod(0o600)
        rotated = True
    if rotated and reopen is not None:
        reopen()
    cutoff = (now - timedelta(days=days)).timestamp()
    for path in log_dir.glob("*.log.*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


async def keep_bounded(
    logs: Sequence[tuple[Path, Callable[[], object]]], days: int, now: Callable[[], datetime]
) -> None:
    """`bereik up`'s worker: every hour, each Asterisk's logs pruned (`prune_logs`)."""
    while True:
        for log_dir, reopen in logs:
            try:
                await asyncio.to_thread(prune_logs, log_dir, days, now(), reopen)
            except OSError as exc:
                log.warning("Asterisk's logs in %s not pruned: %s", log_dir, exc)
        await asyncio.sleep(CHECK_SECONDS)
