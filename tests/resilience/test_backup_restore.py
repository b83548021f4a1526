"""A backup of a running exchange under a call, restored onto a clean instance.

`bereik backup` runs while a caller is in the menu; the old exchange then goes away.
`bereik restore` on a fresh instance directory and database brings back the open hoppers
and the generated secrets: the team member's phone registers there with the password it
had, and a caller who reaches nobody in the team is offered the callback and gets one.
On SQLite (the online backup) and on PostgreSQL (pg_dump, restored with pg_restore).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.api import ami_connected, api
from tests.support.backends import on_both_backends
from tests.support.users import api_tokens

TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""
WAITING = ("0612340001", "0612340002")
CITIZEN = "0612340009"


def phones() -> list[Phone]:
    return [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), registers=True)]


@pytest.fixture
def machines(
    installation: asterisk.Installation, tmp_path: Path
) -> Iterator[tuple[Exchange, Exchange]]:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    with (
        exchange(installation, tmp_path / "old", phones=phones(), teams_toml=TEAM) as old,
        exchange(installation, tmp_path / "new", phones=phones(), teams_toml=TEAM) as new,
    ):
        yield old, new


async def bereik(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it on the machine."""
    command = [sys.executable, "-m", "bereik", *map(str, args)]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, cwd=REPO, timeout=120
    )


@on_both_backends
async def test_a_backup_under_a_call_restored_on_a_clean_instance_keeps_hoppers_and_phones(
    machines: tuple[Exchange, Exchange], tmp_path: Path, backend: str
) -> None:
    old, new = machines
    assert old.database_url != new.database_url  # two machines, two databases
    old.start_asterisk()
    old.start_serve()
    await ami_connected(old)
    old.register("3001")
    old.phone("2001", ring_ms=200)  # the KCC answers the caller in the menu below
    token = (await api_tokens(old, [("anna", "agent", "", "2001")]))["anna"]
    for caller in WAITING:
        status, body = await api(
            old, "POST", "/api/hoppers", token, {"team": "vergunningen", "caller": caller}
        )
        assert status == 201, body

    # Under a call: a caller is in the menu while the archive is written.
    call = asyncio.create_task(old.call("14070", caller="0612340005", hold_ms=6000))
    await until(lambda: old.active_channels() > 0, timeout=15)
    archive = tmp_path / "nightly.tar.gz"
    made = await bereik("backup", "--config", old.config_path, "--out", archive)
    assert made.returncode == 0, made.stderr
    kind = "postgresql" if backend == "postgres" else "sqlite"
    assert made.stdout.strip().endswith(f"database {kind}"), made.stdout
    assert old.active_channels() > 0, "the backup must be made while the call goes on"
    assert (await call).returncode == 0
    secrets = json.loads((old.host_instance / "secrets.json").read_text())
    old.stop_serve()
    old.stop_asterisk()

    restored = await bereik("restore", archive, "--config", new.config_path)
    assert restored.returncode == 0, restored.stderr
    new.start_asterisk()
    new.start_serve()
    await ami_connected(new)
    open_hoppers = new.rows("SELECT caller, status FROM hoppers ORDER BY caller")
    assert [(h.caller, h.status) for h in open_hoppers] == [(c, "open") for c in WAITING]
    assert (
        json.loads((new.host_instance / "secrets.json").read_text())["phones"]
        == (secrets["phones"])
    )
    new.register("3001")  # with the password it had on the old machine
    new.phone("2001", ring_ms=200)
    new.phone("3001", mode="noanswer")

    # Nobody in the team answers: the callback offer, confirmed with 1.
    offered = await new.call(
        "7001", caller=CITIZEN, keys="1", key_delay_ms=2500, hold_ms=6000, timeout_s=60
    )
    assert offered.returncode == 0, offered.stderr
    made_there = await until(
        lambda: new.rows("SELECT team_id, status FROM hoppers WHERE caller = :c", c=CITIZEN)
    )
    assert [(h.team_id, h.status) for h in made_there] == [("vergunningen", "open")]
