"""Retention covers every copy of a caller's number: the waiting line's stays and the virtual
holds go after `retention.call_days`, as the calls do; Asterisk keeps no queue_log; its log
files are rotated and deleted on the same term (deploy/logrotate, and `bereik up`)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cti.retention import purge
from cti.services import Services
from cti.store.models import QueueCall, VirtualHold
from dialplan.asterisk import Installation
from dialplan.config import Config, load
from dialplan.logs import LOGROTATE_FILE, prune_logs
from dialplan.render import render
from tests.support.memory_services import memory_services

NOW = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
CONFIG = Config.model_validate({"retention": {"call_days": 30}})


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path, metric_teams=[]) as services:
        yield services


async def test_waiting_line_stays_and_virtual_holds_go_after_the_call_term(
    services: Services,
) -> None:
    async with services.sessions() as session, session.begin():
        for days, uniqueid in ((31, "old"), (29, "new")):
            at = NOW - timedelta(days=days)
            session.add(
                QueueCall(queue="kcc", uniqueid=uniqueid, caller="0612345678", joined_at=at)
            )
            session.add(
                VirtualHold(
                    call_uniqueid=uniqueid,
                    number="0612345678",
                    priority=1,
                    arrived_at=at,
                    requested_at=at,
                    status="reached",
                )
            )
    purged = await purge(services, NOW)
    assert (purged.queue_calls, purged.virtual_holds) == (1, 1)
    async with services.sessions() as session:
        stays = list(await session.scalars(select(QueueCall.uniqueid)))
        holds = list(await session.scalars(select(VirtualHold.call_uniqueid)))
    assert stays == ["new"] and holds == ["new"]


def rendered(tmp_path: Path, toml: str = "") -> dict[str, str]:
    config_path = tmp_path / "bereik.toml"
    config_path.write_text(f'[asterisk]\ninstance_dir = "/instance"\n{toml}')
    root = tmp_path / "root"
    (root / "usr/lib/asterisk/modules").mkdir(parents=True, exist_ok=True)
    etc = render(load(config_path), Installation(root, "22"))
    return {path.name: path.read_text() for path in etc.iterdir()}


def test_asterisk_writes_no_queue_log(tmp_path: Path) -> None:
    """app_queue's queue_log (every caller's number, no term): off; the figures come from
    AMI and the database."""
    logger = rendered(tmp_path)["logger.conf"]
    general = logger.split("[logfiles]")[0]
    assert "queue_log = no" in general


def test_the_logrotate_file_keeps_asterisks_logs_for_the_call_term(tmp_path: Path) -> None:
    text = rendered(tmp_path, "[retention]\ncall_days = 14\n")[LOGROTATE_FILE]
    assert f"{tmp_path}/root/instance/log/*.log" in text
    assert "daily" in text and "rotate 14" in text and "maxage 14" in text
    assert "copytruncate" in text


def test_logrotate_with_the_rendered_file_deletes_logs_past_the_term(tmp_path: Path) -> None:
    text = rendered(tmp_path, "[retention]\ncall_days = 3\n")[LOGROTATE_FILE]
    log_dir = tmp_path / "root/instance/log"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "full.log").write_text("caller 0612345678\n")
    old = log_dir / "full.log.20260101.gz"
    old.write_bytes(b"")
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], check=True, timeout=30
    )
    assert not old.exists()
    assert (log_dir / "full.log").read_text() == ""  # rotated: the numbers moved on
    today = datetime.now().strftime("%Y%m%d")  # logrotate's dateext, in local time
    assert (log_dir / f"full.log.{today}").read_text() == "caller 0612345678\n"


def test_bereik_up_rotates_and_deletes_logs_past_the_term(tmp_path: Path) -> None:
    """What `bereik up` does once a day with the log directory of its Asterisk."""
    full = tmp_path / "full.log"
    full.write_text("caller 0612345678\n")
    kept = tmp_path / "messages.log.20260608"
    kept.write_text("x")
    gone = tmp_path / "full.log.20260501"
    gone.write_text("caller 0687654321\n")
    for path, days in ((kept, 2), (gone, 40)):
        moment = NOW.timestamp() - days * 86400
        os.utime(path, (moment, moment))
    reopened = []
    prune_logs(tmp_path, 30, NOW, reopen=lambda: reopened.append(True))
    assert not gone.exists() and kept.exists()
    rotated = tmp_path / "full.log.20260610"
    assert rotated.read_text() == "caller 0612345678\n"
    assert reopened == [True]
    assert oct(rotated.stat().st_mode & 0o777) == "0o600"
