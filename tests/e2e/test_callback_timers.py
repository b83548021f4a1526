"""Reminders and escalations are mailed exactly once: two `bereik serve` processes on one
database at the same time, and restarts between a timer's due time and the next check.

Real parts: two `bereik serve` subprocesses, the SQLite database they share, and an
aiosmtpd SMTP server counting what arrives. Asterisk is not needed for mail. The clock is
not faked: the hoppers are written with deadlines that make their timers due already.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, start_bereik_serve
from cti.store.db import create_engine, migrate, sessions
from cti.store.models import Hopper
from dialplan import asterisk
from dialplan.config import load
from tests.support.mail import Mailbox, Smtp

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "3000"
members = ["3001"]
mailbox = "vergunningen@gemeente.test"
lead_mailbox = "teamleider.vergunningen@gemeente.test"
"""

SETTINGS = """
[callbacks]
reminder_hour = 0
check_seconds = 1
"""


class Serve:
    """One more `bereik serve` process on the exchange's database, with its own ports."""

    def __init__(self, ex: Exchange, label: str) -> None:
        self.http = free_port()
        text = ex.config_path.read_text()
        text = text.replace(f"http_port = {ex.ports.http}", f"http_port = {self.http}")
        text = text.replace(f"agi_port = {ex.ports.agi}", f"agi_port = {free_port()}")
        self.config = ex.workdir / f"bereik-{label}.toml"
        self.config.write_text(text)
        self.log = ex.workdir / f"serve-{label}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_bereik_serve(self.config, self.log)

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                # Readiness: it serves (/healthz may answer 503 for a part that is down,
                # such as AMI here, where no Asterisk runs).
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("second bereik serve not up")

    def stop(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            (process.kill if kill else process.terminate)()
            process.wait(15)


@pytest.fixture
def ex(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    with exchange(
        installation,
        tmp_path,
        phones=[Phone("3001", free_port(), "Piet")],
        kcc_agents=[],
        teams_toml=TEAMS,
        extra_toml=SETTINGS,
    ) as ex:
        # The harness writes [kcc] itself; the supervisor's mailbox goes into that table.
        text = ex.config_path.read_text().replace(
            "[kcc]\n", '[kcc]\nsupervisor_mailbox = "kcc.supervisor@gemeente.test"\n', 1
        )
        ex.config_path.write_text(text)
        ex.config = load(ex.config_path)
        yield ex


def _due_today(now: datetime) -> datetime:
    """A deadline later today (local time), so its reminder (hour 0) is due already."""
    tz = ZoneInfo("Europe/Amsterdam")
    end_of_day = datetime.combine(now.astimezone(tz).date(), datetime.max.time(), tzinfo=tz)
    return min(now + timedelta(minutes=20), end_of_day.astimezone(UTC))


async def add_hoppers(ex: Exchange, *specs: tuple[str, datetime, str]) -> list[int]:
    engine = create_engine(ex.database_url)
    ids = []
    try:
        async with sessions(engine)() as session, session.begin():
            for caller, deadline, status in specs:
                hopper = Hopper(
                    team_id="vergunningen",
                    caller=caller,
                    reason="no_answer",
                    created_at=deadline - timedelta(days=2),
                    deadline=deadline,
                    status=status,
                    counts_for_norm=True,
                    repeat_count=0,
                )
                session.add(hopper)
                await session.flush()
                ids.append(hopper.id)
    finally:
        await engine.dispose()
    return ids


def clock_mails(mailbox: Mailbox) -> list[Any]:
    """The reminders and escalations; other mails (the weekly report) are not this test's."""
    return [
        m
        for m in mailbox.messages
        if str(m["X-Bereik-Outbox"]).startswith(("reminder:", "escalation:"))
    ]


def keys(mailbox: Mailbox) -> Counter[str]:
    return Counter(str(m["X-Bereik-Outbox"]) for m in clock_mails(mailbox))


async def wait_for_clock_mails(mailbox: Mailbox, expected: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(clock_mails(mailbox)) < expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{len(clock_mails(mailbox))} of {expected} mails: {keys(mailbox)}"
            )
        await asyncio.sleep(0.1)


async def settle(mailbox: Mailbox, expected: int, quiet: float = 4.0) -> None:
    """Wait for `expected` mails, then several more scheduler passes in which none may come."""
    await wait_for_clock_mails(mailbox, expected)
    await asyncio.sleep(quiet)
    assert len(clock_mails(mailbox)) == expected, keys(mailbox)


async def test_reminder_and_escalation_are_mailed_exactly_once(ex: Exchange) -> None:
    now = datetime.now(UTC)
    if (_due_today(now) - now).total_seconds() < 120:
        await asyncio.sleep(150)  # the last minutes of the day: let the date turn first
        now = datetime.now(UTC)
    await asyncio.to_thread(migrate, ex.config.database.url)
    due_today, overdue, closed_overdue, later = await add_hoppers(
        ex,
        ("0611111111", _due_today(now), "open"),
        ("0622222222", now - timedelta(hours=1), "open"),
        ("0633333333", now - timedelta(hours=1), "closed"),
        ("0644444444", now + timedelta(days=3), "open"),
    )
    smtp = Smtp(ex.ports.smtp)
    mailbox = smtp.start()
    other = Serve(ex, "b")
    try:
        # Two processes at once on one database.
        ex.start_serve(wait=False)
        other.start()
        ex.wait_http("/healthz", timeout=30)
        other.wait_up()
        await settle(mailbox, 3)
        assert keys(mailbox) == {
            f"reminder:{due_today}": 1,
            f"escalation:{overdue}:lead": 1,
            f"escalation:{overdue}:kcc": 1,
        }
        to = {str(m["X-Bereik-Outbox"]): str(m["To"]) for m in clock_mails(mailbox)}
        assert to[f"reminder:{due_today}"] == "vergunningen@gemeente.test"
        assert to[f"escalation:{overdue}:lead"] == "teamleider.vergunningen@gemeente.test"
        assert to[f"escalation:{overdue}:kcc"] == "kcc.supervisor@gemeente.test"
        subject = next(
            str(m["Subject"])
            for m in mailbox.messages
            if m["X-Bereik-Outbox"] == f"escalation:{overdue}:lead"
        )
        assert f"#{overdue}" in subject and "Termijn verstreken" in subject

        # Both go down (one killed mid-flight); meanwhile another hopper falls due and one
        # more becomes due today. Both come back at once, and one restarts once more.
        ex.stop_serve(kill=True)
        other.stop()
        second_overdue, second_today = await add_hoppers(
            ex,
            ("0655555555", datetime.now(UTC) - timedelta(minutes=5), "open"),
            ("0666666666", _due_today(datetime.now(UTC)), "open"),
        )
        ex.start_serve(wait=False)
        other.start()
        ex.wait_http("/healthz", timeout=30)
        other.wait_up()
        await wait_for_clock_mails(mailbox, 6)
        ex.stop_serve()
        ex.start_serve()
        await settle(mailbox, 6)
        assert keys(mailbox) == {
            f"reminder:{due_today}": 1,
            f"escalation:{overdue}:lead": 1,
            f"escalation:{overdue}:kcc": 1,
            f"escalation:{second_overdue}:lead": 1,
            f"escalation:{second_overdue}:kcc": 1,
            f"reminder:{second_today}": 1,
        }
        assert not any(str(closed_overdue) in k or str(later) in k for k in keys(mailbox))
        rows = ex.rows(
            "SELECT key, sent_at FROM outbox WHERE key LIKE 'reminder:%' OR key LIKE 'escalation:%'"
        )
        assert len(rows) == 6 and all(r.sent_at is not None for r in rows)
    finally:
        other.stop()
        ex.stop_serve()
        smtp.stop()
