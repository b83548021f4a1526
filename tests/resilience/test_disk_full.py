"""A nearly full disk under the instance directory: seen, alerted, and callers still served.

The instance directory is a small file system of its own (a tmpfs, mounted for the test
and unmounted after it), and a file fills it until less is free than `server.disk_free_mb`
asks for. The free space `bereik serve` puts on /metrics is the file system's own, its
minimum beside it, and a real Prometheus with the repository's rules has BereikDiskLow
pending (it fires after its minute); /healthz names the disk. A caller still reaches the
KCC, and a caller who confirms a callback gets the hopper, hears the apology instead of the
invitation to record their question, and no recording is started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from tests.support.api import ami_connected
from tests.support.prometheus import Prometheus

TEAM = """
[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
members = []
mailbox = "parkeren@gemeente.example"
"""
KCC_CALLER = "0612340071"
CITIZEN = "0612340072"
SKIPPED = re.compile(r'^bereik_question_recordings_total\{result="skipped"\} (\S+)$', re.M)
FREE = re.compile(r"^bereik_disk_free_bytes (\S+)$", re.M)
MB = 1024 * 1024
SIZE_MB = 96  # room for what Asterisk and serve write there in the test (sounds, logs)
MINIMUM_MB = 32  # server.disk_free_mb
LEFT_MB = 12  # what the filler leaves free: below the minimum, enough for the calls' logs


def mount_tmpfs(where: Path) -> None:
    """`where` as a tmpfs of SIZE_MB for the test (we run as root)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(where)],
        check=True,
    )


def unmount(where: Path) -> None:
    subprocess.run(["umount", "--lazy", str(where)], check=False)
    with contextlib.suppress(OSError):
        where.rmdir()


def fill(where: Path, leave: int) -> None:
    """A file that takes all but `leave` bytes of the file system, as recordings would."""
    free = shutil.disk_usage(where).free
    assert free > leave + MB, f"only {free} bytes free before the filler"
    with (where / "filler").open("wb") as filler:
        os.posix_fallocate(filler.fileno(), 0, free - leave)


@pytest.fixture
def full(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port(), "KCC Anna")]
    where: Path | None = None
    try:
        with exchange(
            installation,
            tmp_path,
            phones=phones,
            teams_toml=TEAM,
            extra_toml="[question_recording]\nenabled = true\n",
            server_toml=f"disk_free_mb = {MINIMUM_MB}",
        ) as ex:
            where = ex.host_instance
            mount_tmpfs(where)
            ex.start_asterisk()
            ex.start_serve()
            yield ex
    finally:
        # After the exchange's close: Asterisk and serve no longer write there.
        if where is not None:
            unmount(where)


async def test_a_nearly_full_disk_is_alerted_and_callers_still_reach_a_person_or_a_callback(
    full: Exchange, tmp_path: Path
) -> None:
    prometheus = Prometheus(tmp_path, full.ports.http)
    try:
        prometheus.wait_ready()
        await ami_connected(full)
        assert full.health()[0] == 200  # room enough until the disk fills
        fill(full.host_instance, LEFT_MB * MB)

        def gauge() -> float | None:
            found = FREE.search(full.http_get("/metrics"))
            value = float(found.group(1)) if found else None
            return value if value is not None and value < MINIMUM_MB * MB else None

        # The file system's own figure: what is left, less what the logs wrote since.
        free = await until(gauge, timeout=30)
        assert (LEFT_MB - 4) * MB < free <= LEFT_MB * MB, free
        below = 'bereik_disk_free_bytes{job="bereik"} < bool bereik_disk_free_minimum_bytes'
        await prometheus.until(below, 1, timeout=30)
        pending = 'ALERTS{alertname="BereikDiskLow",alertstate="pending"}'
        await prometheus.until(pending, 1, timeout=20)
    finally:
        prometheus.close()
    status, body = full.health()
    assert status == 503 and body["down"] == ["disk"], body

    full.phone("2001", ring_ms=200)
    answered = await full.call("14070", caller=KCC_CALLER, hold_ms=3000)
    assert answered.returncode == 0, answered.stderr
    rows = await until(
        lambda: full.rows(
            "SELECT answered_by FROM calls WHERE caller = :c AND outcome != ''", c=KCC_CALLER
        )
    )
    assert [r.answered_by for r in rows] == ["kcc"]

    # Nobody in Parkeren: the callback offer, confirmed with 1; then the apology, no tone.
    confirmed = await full.call(
        "7003", caller=CITIZEN, keys="1", key_delay_ms=3000, hold_ms=12_000, timeout_s=60
    )
    assert confirmed.returncode == 0, confirmed.stderr
    hoppers = await until(
        lambda: full.rows("SELECT id, team_id FROM hoppers WHERE caller = :c", c=CITIZEN)
    )
    assert [h.team_id for h in hoppers] == ["parkeren"]
    assert full.rows("SELECT id FROM question_recordings") == []
    skipped = SKIPPED.search(full.http_get("/metrics"))
    assert skipped and float(skipped.group(1)) == 1
    assert "question not recorded: the disk is nearly full" in full.serve_log.read_text()
