"""The operator's view of one `bereik serve`: each part, up or down, and why.

One check, two readers: GET /healthz (a monitoring system; 503 when any part is down) and
`bereik status` (an operator on the machine, bereik/cli.py). The parts:

* ``database``: a ``SELECT 1`` answered within CHECK_SECONDS;
* ``ami`` (or ``ami <node>`` per Asterisk node): connected and logged in;
* every supervised part (cti/supervisor.py): running, not waiting for its restart;
* ``fastagi``: the FastAGI socket takes sessions;
* ``mail``: no unsent mail in the outbox older than ``mail.late_seconds`` (an SMTP outage shows here
  while the mails wait);
* ``disk``: at least ``server.disk_free_mb`` free where the instance directory is (also on
  /metrics, and below it no recording is started: `disk_low`).

This is not the load balancer's readiness (bereik/readiness.py, GET /readyz): an SMTP
outage must never take a process out of the FastAGI rotation.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from cti.ami.nodes import AmiNodes
from cti.privacy import mask_numbers_in
from cti.services import Services
from cti.store.db import STORE_DOWN
from cti.store.models import OutboxMail
from cti.supervisor import Supervisor

# A database that takes longer than this to answer SELECT 1 counts as down.
CHECK_SECONDS = 3.0
MB = 1024 * 1024
# How often the free disk space is put on /metrics.
DISK_SECONDS = 10.0
# What a store that is down or refuses raises: the part is down, the check goes on.
UNAVAILABLE: tuple[type[BaseException], ...] = (SQLAlchemyError, *STORE_DOWN)


@dataclass
class Part:
    name: str
    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.extra}


@dataclass
class Report:
    parts: list[Part]

    @property
    def ok(self) -> bool:
        return all(part.ok for part in self.parts)

    @property
    def down(self) -> list[str]:
        return [part.name for part in self.parts if not part.ok]

    def part(self, name: str) -> Part | None:
        return next((part for part in self.parts if part.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        database = self.part("database")
        ami_up = all(part.ok for part in self.parts if _is_ami(part.name))
        return {
            "status": "ok" if self.ok else "degraded",
            "down": self.down,
            "parts": {part.name: part.as_dict() for part in self.parts},
            # The two fields /healthz had before the parts (scripts read them).
            "database": "ok" if database and database.ok else "error",
            "ami": "connected" if ami_up else "disconnected",
        }


class Health:
    """The parts of this process; `agi` says whether the FastAGI socket listens (None: a
    process without one, such as `bereik status` checking on its own)."""

    def __init__(
        self,
        services: Services,
        supervisor: Supervisor | None = None,
        agi: Callable[[], bool] | None = None,
    ) -> None:
        self.services = services
        self.supervisor = supervisor
        self.agi = agi

    def setup(self, app: web.Application) -> None:
        """Make this the check /healthz and the wall screen read (cti/web/app.py)."""
        app[HEALTH] = self

    async def check(self) -> Report:
        parts = [await self._database()]
        parts += self._ami()
        if self.supervisor is not None:
            for state in self.supervisor.parts.values():
                # /healthz is open to monitoring without a sign-in: no caller's number.
                error = mask_numbers_in(state.last_error)
                detail = "running" if state.up else f"restarting after: {error}"
                if state.finished:
                    detail = "finished"
                parts.append(Part(state.name, state.up, detail, {"restarts": state.restarts}))
        if self.agi is not None:
            listening = self.agi()
            parts.append(Part("fastagi", listening, "listening" if listening else "not listening"))
        if parts[0].ok:
            parts.append(await self._outbox())
        parts.append(self._disk())
        return Report(_merged(parts))

    def down_now(self) -> list[str]:
        """What is down without asking the database: for the wall screen's status line,
        refreshed every few seconds by every open screen."""
        down = [part.name for part in self._ami() if not part.ok]
        if self.supervisor is not None:
            down += [name for name in self.supervisor.down() if name not in down]
        if self.agi is not None and not self.agi():
            down.append("fastagi")
        return down

    async def _database(self) -> Part:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                async with self.services.sessions() as session:
                    await session.execute(text("SELECT 1"))
        except UNAVAILABLE as exc:
            return Part("database", False, f"{type(exc).__name__}: {str(exc)[:200]}")
        return Part("database", True, "answers")

    def _ami(self) -> list[Part]:
        ami = self.services.ami
        if ami is None:
            return []
        clients = list(ami.clients.values()) if isinstance(ami, AmiNodes) else [ami]
        return [
            Part(client.part, client.connected, "connected" if client.connected else "disconnected")
            for client in clients
        ]

    async def _outbox(self) -> Part:
        late = self.services.config.mail.late_seconds
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                async with self.services.sessions() as session:
                    oldest, waiting = (
                        await session.execute(
                            select(func.min(OutboxMail.created_at), func.count()).where(
                                OutboxMail.sent_at.is_(None)
                            )
                        )
                    ).one()
        except UNAVAILABLE as exc:
            return Part("mail", False, f"not readable: {type(exc).__name__}")
        if oldest is None:
            return Part("mail", True, "no mail waiting", {"waiting": 0, "oldest_seconds": 0})
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        detail = f"{waiting} mails waiting, the oldest for {age:.0f} s"
        if age > late:
            detail += f" (more than mail.late_seconds = {late:.0f}: is the SMTP server reachable?)"
        return Part("mail", age <= late, detail, {"waiting": waiting, "oldest_seconds": round(age)})

    def _disk(self) -> Part:
        minimum = self.services.config.server.disk_free_mb
        try:
            free, where = disk_free(self.services)
        except OSError as exc:
            return Part("disk", False, str(exc))
        free_mb = free // MB
        return Part(
            "disk",
            free_mb >= minimum,
            f"{free_mb} MB free in {where} (at least {minimum} MB wanted)",
            {"free_mb": free_mb},
        )


HEALTH = web.AppKey("health", Health)


def disk_free(services: Services) -> tuple[int, Path]:
    """Bytes free where the instance directory is (recordings, prompts, logs), and where."""
    where = _existing(services.instance_dir)
    return shutil.disk_usage(where).free, where


def disk_low(services: Services) -> bool:
    """Less free than ``server.disk_free_mb``: no new recording is started (a caller
    hears an apology instead of a recording that fails halfway)."""
    try:
        free, _ = disk_free(services)
    except OSError:
        return True
    return free < services.config.server.disk_free_mb * MB


async def watch_disk(services: Services) -> None:
    """Worker: the free space on /metrics (``bereik_disk_free_bytes`` beside its minimum),
    for the BereikDiskLow alert, before writes start to fail."""
    metrics = services.metrics
    metrics.disk_free_minimum.set(services.config.server.disk_free_mb * MB)
    while True:
        free, _ = disk_free(services)
        metrics.disk_free.set(free)
        await asyncio.sleep(DISK_SECONDS)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _is_ami(name: str) -> bool:
    return name == "ami" or name.startswith("ami ")


def _merged(parts: list[Part]) -> list[Part]:
    """One entry per name: an AMI node's connection and its supervised reconnect loop are
    one part, down when either is."""
    merged: dict[str, Part] = {}
    for part in parts:
        seen = merged.get(part.name)
        if seen is None:
            merged[part.name] = part
        elif seen.ok and not part.ok:
            merged[part.name] = Part(part.name, False, part.detail, seen.extra | part.extra)
        else:
            seen.extra |= part.extra
    return list(merged.values())


def format_report(report: dict[str, Any]) -> str:
    """/healthz's body as lines for an operator's terminal (`bereik status`)."""
    parts: dict[str, dict[str, Any]] = report.get("parts", {})
    width = max((len(name) for name in parts), default=4)
    lines = [
        f"{'ok  ' if part.get('ok') else 'DOWN'}  {name:<{width}}  {part.get('detail', '')}"
        for name, part in parts.items()
    ]
    down = report.get("down", [])
    lines.append("all parts up" if not down else f"down: {', '.join(down)}")
    return "\n".join(lines)
