"""Workers that used to only log a fault, under one of the two policies now (issue 27):

* a malformed AMI message is counted (bereik_ami_event_failures_total, the AMI reader)
  and skipped, the connection and the next event kept;
* a duty run on each AMI connect (resync, the queue members' push) waits out a store
  that is down, and any other failure reaches the supervisor once the other duties ran,
  one Asterisk or one node of several;
* a push to Asterisk on taking the call tracking lease that fails (not for the store)
  reaches the supervisor through the lease's part, whose restart pushes again;
* a hopper whose reminders cannot be worked out is set aside once, not logged on every
  pass, and `bereik events retry` queues them after the fix;
* PostgreSQL's change notifications reconnect while the store is down, and raise any
  other fault to the supervisor.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bereik.events import replayers
from cti.ami.client import READER, AmiClient, AmiConnectDutyFailed, _Protocol
from cti.ami.nodes import AmiNodes
from cti.callbacks import scheduler
from cti.calls import lease as tracking_lease
from cti.store import cache, faults
from cti.store.models import Hopper, OutboxMail
from cti.supervisor import Supervisor
from metrics.registry import BereikMetrics
from tests.support.memory_services import CONFIG, memory_services


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "BACKOFF_MIN", 0.01)


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- a malformed AMI message -------------------------------------------------------------


class _Transport:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Factory:
    forgetable_actions: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.awaiting_actions: list[Any] = []

    def dispatch(self, message: Any) -> list[str]:
        self.events.append(message)
        return []

    def connection_lost(self, exc: Any) -> None:
        raise AssertionError("the connection was closed")


def test_a_malformed_ami_message_is_counted_for_the_reader_and_the_next_event_comes_out() -> None:
    metrics = BereikMetrics()
    client = AmiClient("127.0.0.1", 1, "bereik", "secret")
    metrics.init_ami_subscriber(READER)
    client.on_skipped.append(lambda: metrics.ami_event_failed(READER))
    protocol = _Protocol()
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    factory = _Factory()
    protocol.factory = factory
    protocol.on_skipped = client._skipped
    # A repeated Event header: panoramisk makes its value a list, and handling it raises.
    protocol.data_received(
        b"Event: Hangup\r\nEvent: Newchannel\r\nUniqueid: 1.1\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n"
    )
    assert [event.get("Uniqueid") for event in factory.events] == ["1.2"]
    assert not transport.closed
    failures = metrics.registry.get_sample_value(
        "bereik_ami_event_failures_total", {"subscriber": READER}
    )
    assert failures == 1


# -- the duties of an AMI connect --------------------------------------------------------


@pytest.fixture
async def asterisk() -> AsyncIterator[dict[str, int]]:
    """A stand-in for Asterisk's AMI: accepts any login, answers every action."""
    seen = {"logins": 0, "port": 0}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(
                    line.split(": ", 1) for line in block.strip().splitlines() if ": " in line
                )
                if headers.get("Action") == "Login":
                    seen["logins"] += 1
                answer = f"Response: Success\r\nActionID: {headers.get('ActionID', '')}\r\n\r\n"
                writer.write(answer.encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    seen["port"] = server.sockets[0].getsockname()[1]
    try:
        yield seen
    finally:
        server.close()


def ami_client(port: int, node: str = "") -> AmiClient:
    return AmiClient(
        "127.0.0.1", port, "bereik", "secret", backoff_min=0.01, backoff_max=0.02, node=node
    )


async def test_a_failing_connect_duty_reaches_the_supervisor_after_the_others_ran(
    asterisk: dict[str, int],
) -> None:
    metrics = BereikMetrics()
    client = ami_client(asterisk["port"])
    runs: list[str] = []

    async def resync() -> None:
        runs.append("resync")
        if runs.count("resync") == 1:
            raise KeyError("a fault of ours")

    async def members() -> None:
        runs.append("members")

    client.on_connected += [resync, members]
    parts = Supervisor(metrics, backoff_min=0.05, backoff_max=0.1)
    for name, loop in client.loops().items():
        parts.add(name, loop)
    parts.start()
    try:
        await until(lambda: runs.count("members") == 2 and client.connected)
    finally:
        await parts.stop()
    # The other duty ran the first time as well; the restart connected again, ran both.
    assert runs == ["resync", "members", "resync", "members"]
    assert asterisk["logins"] == 2
    assert parts.parts["ami"].restarts == 1
    assert parts.parts["ami"].last_error.startswith("AmiConnectDutyFailed: on connecting")
    assert metrics.registry.get_sample_value("bereik_worker_restarts_total", {"worker": "ami"})


async def test_a_connect_duty_waits_out_a_store_that_is_down_on_the_same_connection(
    asterisk: dict[str, int],
) -> None:
    client = ami_client(asterisk["port"])
    tries: list[int] = []

    async def restore() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise sqlite3.OperationalError("database is locked")

    client.on_connected.append(restore)
    client.start()
    try:
        await until(lambda: len(tries) == 3)
        await client.wait_connected(1)
    finally:
        await client.close()
    assert asterisk["logins"] == 1  # waited out: no reconnect


async def test_a_failing_duty_of_one_node_restarts_that_nodes_connection(
    asterisk: dict[str, int],
) -> None:
    nodes = AmiNodes({"n1": ami_client(asterisk["port"], "n1")})
    runs: list[str] = []

    async def resync() -> None:
        runs.append(nodes.node)
        if len(runs) == 1:
            raise RuntimeError("a fault of ours")

    nodes.on_connected.append(resync)
    parts = Supervisor(None, backoff_min=0.05, backoff_max=0.1)
    for name, loop in nodes.loops().items():
        parts.add(name, loop)
    parts.start()
    try:
        await until(lambda: len(runs) == 2 and nodes.connected)
    finally:
        await parts.stop()
    assert runs == ["n1", "n1"]  # scoped to its node both times
    assert parts.parts["ami n1"].restarts == 1
    assert "RuntimeError: a fault of ours" in parts.parts["ami n1"].last_error


def test_a_connect_duty_failure_is_no_ami_error_so_the_reconnect_loop_does_not_hide_it() -> None:
    from cti.ami.client import AmiError

    assert not issubclass(AmiConnectDutyFailed, AmiError)


# -- a push on taking the call tracking lease --------------------------------------------


class _Ami:
    connected = True

    def __init__(self) -> None:
        self.on_connected: list[Any] = []


async def test_a_failed_push_on_taking_the_lease_restarts_the_lease_which_pushes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking_lease, "BEAT_SECONDS", 0.02)
    pushes: list[str] = []

    async def members() -> None:
        pushes.append("push")
        if len(pushes) == 1:
            raise RuntimeError("QueueAdd refused")

    async with memory_services(CONFIG, tmp_path) as services:
        lease = tracking_lease.TrackingLease(services.sessions, "ami:test", "here:1")
        lease.owner_duty(_Ami(), "queue members", members)  # type: ignore[arg-type]
        parts = Supervisor(services.metrics, backoff_min=0.05, backoff_max=0.1)
        parts.add("call tracking lease", lease.run)
        parts.start()
        try:
            await until(lambda: len(pushes) == 2)
            await asyncio.sleep(0.1)  # a few beats more: no third push
        finally:
            await parts.stop()
    part = parts.parts["call tracking lease"]
    assert pushes == ["push", "push"]
    assert part.restarts == 1 and lease.owned.is_set()
    assert part.last_error == "LeaseDutyFailed: queue members: RuntimeError: QueueAdd refused"


# -- a hopper whose reminders cannot be worked out ---------------------------------------


async def test_a_hopper_of_a_removed_team_is_set_aside_once_and_retry_queues_its_reminder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        now = datetime.now(UTC)
        async with services.sessions() as session, session.begin():
            # Overdue: escalations are due whatever the hour of the test.
            session.add(
                Hopper(
                    team_id="opgeheven",
                    caller="0612345678",
                    reason="no_answer",
                    deadline=now - timedelta(hours=1),
                )
            )
        assert await scheduler.check(services) == []
        assert await scheduler.check(services) == []  # the next pass: not again
        aside = await faults.listing(services.sessions)
        assert [(row.source, row.payload["hopper"]) for row in aside] == [(scheduler.SOURCE, 1)]
        assert "onbekend team" in aside[0].error
        counted = services.metrics.registry.get_sample_value(
            "bereik_set_aside_total", {"source": scheduler.SOURCE}
        )
        assert counted == 1
        assert len([r for r in caplog.records if "set aside" in r.getMessage()]) == 1

        # Still unknown: it stays aside, nothing queued.
        results = await faults.replay(services.sessions, replayers(services))
        assert [(r.ok, "onbekend team" in r.error) for r in results] == [(False, True)]

        # The team is back in the configuration (or the hopper moved): retry queues it.
        team = CONFIG.teams[0].model_copy(update={"id": "opgeheven"})
        services.config = CONFIG.model_copy(update={"teams": [*CONFIG.teams, team]})
        results = await faults.replay(services.sessions, replayers(services))
        assert [r.ok for r in results] == [True]
        async with services.sessions() as session:
            keys = list((await session.execute(select(OutboxMail.key))).scalars())
        assert keys and all(key.startswith("escalation:1:") for key in keys)
        assert await scheduler.check(services) == []  # queued once


# -- PostgreSQL's change notifications ---------------------------------------------------


async def test_change_notifications_reconnect_while_down_and_raise_a_fault_of_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncpg

    tries: list[str] = []

    async def connect(*_: Any, **__: Any) -> Any:
        tries.append("connect")
        if len(tries) == 1:
            raise ConnectionRefusedError("PostgreSQL restarting")
        raise TypeError("a fault of ours")

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(cache.Notifications, "RETRY_SECONDS", (0.01,))
    notifications = cache.Notifications("postgresql://bereik@127.0.0.1/bereik")
    with pytest.raises(TypeError, match="a fault of ours"):
        await asyncio.wait_for(notifications.run(), 5)
    assert tries == ["connect", "connect"]
    assert not notifications.listening
