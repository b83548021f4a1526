"""Two `bereik serve` on one PostgreSQL database: what is pushed to Asterisk is pushed once.

* The KCC line's members are restored from the database by the process that owns the
  call tracking lease (cti/calls/lease.py ``owner_duty``) and by no other: after an
  Asterisk restart, and by the standby that takes the lease over after a `kill -9` of
  the owner (a member Asterisk lost meanwhile is back).
* A click-to-call asked of the process that does not own the lease rings the member's
  phone and the citizen once, and its attempt is recorded once.

Light on purpose (no load): two agents, one member, one citizen; the call tests under
load are in test_several_processes.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bench.exchange import Exchange, Phone, ServeProcess, exchange, free_port, until
from dialplan import asterisk
from tests.postgres import PostgresCluster
from tests.resilience.figures import Figures
from tests.support import sipplog
from tests.support.callbacks import CALLBACKS, TEAMS, seed
from tests.support.processes import serve_of, start_processes, tracking_lease
from tests.support.waiting_line import PATIENT_SERVER, feature_code, members, queue_toml

AGENTS = ("2001", "2002")
# What each process logs when it restores the line, or leaves it to the owner
# (cti/queue/service.py restore, cti/calls/lease.py owner_duty).
RESTORED = "queues kcc restored from the database"
LEFT = "queue members: left to the call tracking owner"
SIGNED_IN = {"2001": "in line", "2002": "paused"}


@pytest.fixture
def two_processes(
    installation: asterisk.Installation, tmp_path: Path, postgres: PostgresCluster
) -> Iterator[tuple[Exchange, list[ServeProcess]]]:
    """A KCC waiting line (two agents whose phones register) and a team whose member
    calls citizens back; Asterisk, HAProxy and two `bereik serve` on one PostgreSQL."""
    with exchange(
        installation,
        tmp_path,
        phones=[
            *(Phone(e, free_port(), f"Agent {e}", registers=True) for e in AGENTS),
            Phone("3001", free_port(), "Piet Vergunningen"),
        ],
        kcc_agents=list(AGENTS),
        kcc_toml='mode = "queue"',
        teams_toml=TEAMS,
        extra_toml=queue_toml() + CALLBACKS,
        server_toml=PATIENT_SERVER,
        database_url=postgres.new_database(),
        agi_proxy=True,
    ) as ex:
        serves = start_processes(ex, 2)
        ex.start_agi_proxy(serves)
        ex.start_asterisk()
        yield ex, serves


def log_from(serve: ServeProcess, mark: int) -> str:
    """A process's log from the offset `mark` on."""
    return serve.log.read_text(errors="replace")[mark:]


def marks(serves: list[ServeProcess]) -> list[int]:
    return [len(serve.log.read_text(errors="replace")) for serve in serves]


async def owner_and_standby(
    ex: Exchange, serves: list[ServeProcess]
) -> tuple[ServeProcess, ServeProcess]:
    lease = await until(lambda: tracking_lease(ex), timeout=30)
    owner = serve_of(lease.holder, serves)
    return owner, next(s for s in serves if s is not owner)


async def restart_asterisk_and_count_restores(
    ex: Exchange, owner: ServeProcess, standby: ServeProcess, figures: Figures, label: str
) -> None:
    """Restart Asterisk; the members are back within 10 s, restored by the owner alone."""
    serves = [owner, standby]
    before = marks(serves)
    ex.stop_asterisk()
    ex.start_asterisk()
    started = time.monotonic()
    await until(lambda: members(ex) == SIGNED_IN, timeout=10)
    figures[f"{label}: members back after Asterisk started s"] = round(
        time.monotonic() - started, 1
    )
    # Both processes reconnected: the standby restored too, or left it to the owner.
    await until(
        lambda: any(line in log_from(standby, before[1]) for line in (LEFT, RESTORED)), timeout=30
    )
    await until(lambda: RESTORED in log_from(owner, before[0]), timeout=10)
    restores = [log_from(s, m).count(RESTORED) for s, m in zip(serves, before, strict=True)]
    figures[f"{label}: restores by owner/standby"] = "/".join(map(str, restores))
    assert restores[0] >= 1 and restores[1] == 0, restores


async def test_queue_members_restored_by_the_lease_owner_only_and_by_the_standby_taking_over(
    two_processes: tuple[Exchange, list[ServeProcess]], figures: Figures
) -> None:
    ex, serves = two_processes
    figures.title = "queue members restored once, with 2 processes"
    for extension in AGENTS:
        ex.register(extension)
        await feature_code(ex, ex.config.queue.sign_in_code, extension)
    await feature_code(ex, ex.config.queue.pause_code + "2", "2002")
    await until(lambda: members(ex) == SIGNED_IN, timeout=20)
    owner, standby = await owner_and_standby(ex, serves)

    await restart_asterisk_and_count_restores(ex, owner, standby, figures, "Asterisk restart")

    # kill -9 of the owner; meanwhile Asterisk loses a member (as a push lost while no
    # process owned the line would): the standby restores it when it takes the lease.
    fence = tracking_lease(ex).fence
    killed_at = time.monotonic()
    await asyncio.to_thread(owner.stop, True)
    ex.cli("queue remove member PJSIP/2001 from kcc")
    assert "PJSIP/2001" not in ex.cli("queue show kcc")
    mark = marks([standby])[0]
    taken = await until(
        lambda: (row := tracking_lease(ex)) is not None and row.fence > fence and row, timeout=30
    )
    takeover_s = time.monotonic() - killed_at
    await until(lambda: members(ex) == SIGNED_IN, timeout=10)
    figures["takeover after kill -9 s"] = round(takeover_s, 1)
    figures["member back after kill -9 s"] = round(time.monotonic() - killed_at, 1)
    assert serve_of(taken.holder, serves) is standby
    assert takeover_s < 10
    assert RESTORED in log_from(standby, mark)

    # The killed process comes back as the standby: the new owner alone restores.
    owner.start()
    await restart_asterisk_and_count_restores(
        ex, standby, owner, figures, "Asterisk restart after the takeover"
    )
    assert ex.rows("SELECT extension, paused, pause_reason FROM agent_states ORDER BY 1") == [
        ("2001", False, ""),
        ("2002", True, "backoffice"),
    ]


async def test_click_to_call_through_the_process_not_owning_the_lease_rings_once_and_records_once(
    two_processes: tuple[Exchange, list[ServeProcess]], figures: Figures
) -> None:
    ex, serves = two_processes
    figures.title = "click-to-call through the standby process"
    owner, standby = await owner_and_standby(ex, serves)
    hopper_id, token, _ = await seed(ex)
    member_log = ex.agent_phone("3001", ring_ms=300, talk_ms=8000)
    ex.citizen("answer", ring_ms=300, hold_ms=1500)
    citizen_log = ex.workdir / "citizen-answer-messages.log"
    # The standby follows AMI too; it can originate once it is connected.
    await until(lambda: "AMI connected" in standby.log.read_text(errors="replace"), timeout=30)

    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{standby.http_port}/api/hoppers/{hopper_id}/callback",
            headers={"Authorization": f"Bearer {token}"},
        )
        body = await response.json()
    assert response.status == 202, body
    attempt = await until(
        lambda: next(
            (
                row
                for row in ex.rows("SELECT * FROM callback_attempts WHERE id = :id", id=body["id"])
                if row.outcome != "pending"
            ),
            None,
        ),
        timeout=60,
    )
    # Both calls ended (the citizen hung up): a second originate would have rung by now.
    await until(lambda: ex.active_channels() == 0, timeout=20)

    def invites(log: Path) -> int:
        return len({m.call_id for m in sipplog.read(log) if not m.sent and m.method == "INVITE"})

    attempts = ex.rows("SELECT id FROM callback_attempts WHERE hopper_id = :id", id=hopper_id)
    history = ex.rows(
        "SELECT detail FROM hopper_events WHERE hopper_id = :id AND kind = 'attempt'",
        id=hopper_id,
    )
    hopper = ex.rows("SELECT status, closing_reason FROM hoppers WHERE id = :id", id=hopper_id)[0]
    figures["lease owner"] = f"process {serves.index(owner) + 1}"
    figures["asked of"] = f"process {serves.index(standby) + 1}"
    figures["member phone rung"] = invites(member_log)
    figures["citizen rung"] = invites(citizen_log)
    figures["attempt rows"] = len(attempts)
    assert attempt.outcome == "reached", attempt
    assert invites(member_log) == 1
    assert invites(citizen_log) == 1
    assert len(attempts) == 1
    assert len(history) == 2  # started, and its one outcome
    assert (hopper.status, hopper.closing_reason) == ("closed", "reached")
