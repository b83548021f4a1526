"""Parts of `bereik serve` failing through faults from outside, with nobody watching.

* The database refuses the outbox's claims (a trigger, as a broken schema would): the
  outbox crashes, is shown down on /healthz and /metrics, restarted after its backoff,
  and a real Prometheus with the repository's rules fires BereikWorkerRestarted; once the
  fault is gone the mails it owed go out, each once.
* The SMTP server is down with mails waiting: /healthz answers 503 naming the mail, the
  load balancer's /readyz stays 200; once the server is back the mail goes and /healthz
  is 200 again.
* The database refuses one call's row (a value the schema refuses): that call is set
  aside while the 20 calls after it are written, a real Prometheus with the repository's
  rules fires BereikWorkSetAside; `bereik events retry` after the fix writes it.
* The KCC as a waiting line, its AMI behind a proxy: the database refuses one caller's
  stay in line (set aside, the next caller's stay written) and is locked by another
  program while a caller waits (waited out, the stay written once); the proxy slips
  malformed events into the stream (they cost themselves only: the connection and the
  call rows stay whole) and then kills the connection in the middle of a message (serve
  reconnects within its backoff, /healthz names AMI meanwhile, and the call in progress
  gets its complete row, once); last the database refuses a virtual hold's last stage
  (the citizen reached): the callback is made in its turn, once, all the same, the stage
  is set aside, and `bereik events retry` after the fix writes it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.exchange import REPO, Exchange, Phone, exchange, free_port, until
from cti.ami.client import READER
from dialplan import asterisk
from tests.support import sipplog
from tests.support.ami_proxy import AmiProxy
from tests.support.api import ami_connected, api
from tests.support.mail import Smtp
from tests.support.prometheus import Prometheus
from tests.support.users import api_tokens
from tests.support.waiting_line import (
    PATIENT_SERVER,
    QUEUE_KCC,
    agents,
    metric,
    queue_toml,
    sign_in,
)

TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
mailbox = "vergunningen@gemeente.example"
"""
POISON = "0700000666"
CALLER = "0612300020"
SET_ASIDE = re.compile(r'^bereik_set_aside_total\{source="call events"\} (\S+)$', re.M)


@pytest.fixture
def team(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAM) as ex:
        # A mail waiting 3 s is late: the outage shows on /healthz within the test.
        toml = ex.config_path.read_text()
        ex.config_path.write_text(toml.replace("[mail]\n", "[mail]\nlate_seconds = 3\n", 1))
        ex.start_asterisk()
        ex.start_serve()
        yield ex


def database(ex: Exchange) -> sqlite3.Connection:
    """A second connection to serve's database, as an administrator's sqlite3 would be."""
    return sqlite3.connect(ex.db_path, timeout=10, isolation_level=None)


async def hoppers(ex: Exchange, count: int) -> list[int]:
    """`count` hoppers for Vergunningen through the API, as a KCC agent makes them."""
    token = (await api_tokens(ex, [("anna", "agent", "", "2001")]))["anna"]
    made = []
    for n in range(count):
        status, body = await api(
            ex,
            "POST",
            "/api/hoppers",
            token,
            {"team": "vergunningen", "caller": f"06123400{n:02d}", "note": f"vraag {n}"},
        )
        assert status == 201, body
        made.append(int(body["id"]))
    return made


def ready(ex: Exchange) -> int:
    with urllib.request.urlopen(ex.url("/readyz"), timeout=5) as response:
        return int(response.status)


async def test_an_outbox_crashing_on_refused_claims_is_restarted_alerted_and_mails_once(
    team: Exchange, tmp_path: Path
) -> None:
    prometheus = Prometheus(tmp_path, team.ports.http)
    smtp = Smtp(team.ports.smtp)
    mailbox = smtp.start()
    try:
        prometheus.wait_ready()
        await ami_connected(team)
        up = 'bereik_worker_up{job="bereik",worker="outbox"}'
        await prometheus.until(up, 1)
        await prometheus.until('bereik_worker_restarts_total{job="bereik",worker="outbox"}', 0)

        db = database(team)
        db.execute(
            "CREATE TRIGGER refuse_claims BEFORE UPDATE ON outbox "
            "BEGIN SELECT RAISE(ABORT, 'claims refused'); END"
        )
        made = await hoppers(team, 3)

        # Down, and named where the operator looks: /healthz, /metrics, the alert.
        def outbox_down() -> dict[str, object] | None:
            status, body = team.health()
            return body if status == 503 and "outbox" in body["down"] else None

        body = await until(outbox_down, timeout=20)
        assert "claims refused" in str(body["parts"]["outbox"])  # type: ignore[index]
        firing = 'ALERTS{alertname="BereikWorkerRestarted",alertstate="firing",worker="outbox"}'
        await prometheus.until(firing, 1, timeout=30)
        assert prometheus.value(f"min_over_time({up}[2m])") == 0
        assert not mailbox.messages

        db.execute("DROP TRIGGER refuse_claims")
        # Back within its backoff (2 s doubling, the trigger stood for well under 30 s).
        await prometheus.until(up, 1, timeout=40)
        mails = await mailbox.wait(3, timeout=40)
        await until(lambda: len(team.rows("SELECT id FROM outbox WHERE sent_at IS NOT NULL")) == 3)
        await asyncio.sleep(1.5)  # a second send would come within the outbox's 1 s poll
        assert len(mailbox.messages) == 3
        assert sorted(m["X-Bereik-Outbox"] for m in mails) == sorted(
            f"hopper-{hopper}-created" for hopper in made
        )
        await until(lambda: team.health()[0] == 200, timeout=20)
    finally:
        smtp.stop()
        prometheus.close()
    log = team.serve_log.read_text()
    assert "outbox crashed; restarting it" in log
    assert "IntegrityError" in log


async def test_healthz_names_the_mail_while_smtp_is_down_and_recovers_readyz_stays_up(
    team: Exchange,
) -> None:
    await ami_connected(team)
    assert team.health()[0] == 200
    await hoppers(team, 1)  # the mail server is not running: the mail waits

    def mail_late() -> dict[str, object] | None:
        status, body = team.health()
        return body if status == 503 else None

    body = await until(mail_late, timeout=20)
    assert body["down"] == ["mail"]
    assert "1 mails waiting" in str(body["parts"]["mail"])  # type: ignore[index]
    assert ready(team) == 200  # an SMTP outage never takes serve out of the rotation

    smtp = Smtp(team.ports.smtp)
    mailbox = smtp.start()
    try:
        await mailbox.wait(1, timeout=30)  # the outbox's backoff: at most 8 s by now
        await until(lambda: team.health()[0] == 200, timeout=10)
    finally:
        smtp.stop()
    assert len(mailbox.messages) == 1


async def test_a_poison_call_is_set_aside_while_the_next_20_are_written_and_retry_writes_it(
    team: Exchange, tmp_path: Path
) -> None:
    prometheus = Prometheus(tmp_path, team.ports.http)
    try:
        await poison_call(team, prometheus)
    finally:
        prometheus.close()


async def poison_call(team: Exchange, prometheus: Prometheus) -> None:
    team.phone("2001", ring_ms=200)
    await ami_connected(team)
    prometheus.wait_ready()
    # Scraped at 0 before the poison call: increase() sees no first sample's rise.
    await prometheus.until('bereik_set_aside_total{job="bereik",source="call events"}', 0)
    db = database(team)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON calls "
        f"WHEN NEW.caller = '{POISON}' BEGIN SELECT RAISE(ABORT, 'caller refused'); END"
    )
    poison = await team.call("14070", caller=POISON, hold_ms=500)
    assert poison.returncode == 0, poison.stderr
    aside = await until(lambda: team.rows("SELECT * FROM set_aside ORDER BY id"))
    assert aside[0].source == "call events" and "caller refused" in aside[0].error
    # The operator is told: the rule has no `for:`, so it fires at its next evaluation.
    firing = 'ALERTS{alertname="BereikWorkSetAside",alertstate="firing",source="call events"}'
    await prometheus.until(firing, 1, timeout=15)

    after = await team.call("14070", caller=CALLER, calls=20, rate=2, hold_ms=500)
    assert after.returncode == 0, after.stderr

    def decided() -> list[object]:
        rows = team.rows("SELECT outcome FROM calls WHERE caller = :c", c=CALLER)
        return rows if len(rows) == 20 and all(r.outcome for r in rows) else []

    await until(decided, timeout=30)
    assert not team.rows("SELECT id FROM calls WHERE caller = :c", c=POISON)
    # The poison call's later events followed it aside, in order, and were counted.
    kinds = [row.payload for row in team.rows("SELECT payload FROM set_aside ORDER BY id")]
    assert '"Started"' in kinds[0] and '"Ended"' in kinds[-1], kinds
    counted = SET_ASIDE.search(team.http_get("/metrics"))
    assert counted and float(counted.group(1)) == len(kinds)
    assert team.health()[0] == 200  # the calls go on: nothing is down

    refused = await events_retry(team)
    assert refused.returncode == 1 and "still aside" in refused.stdout, refused.stdout
    db.execute("DROP TRIGGER refuse_poison")
    done = await events_retry(team)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = team.rows("SELECT outcome FROM calls WHERE caller = :c", c=POISON)
    assert len(rows) == 1 and rows[0].outcome, rows
    assert len(team.rows("SELECT id FROM calls WHERE caller = :c", c=CALLER)) == 20


async def events_retry(ex: Exchange, *ids: int) -> subprocess.CompletedProcess[str]:
    """`bereik events retry [ID ...]`, as the operator runs it on the machine."""
    command = [sys.executable, "-m", "bereik", "events", "retry", "--config", str(ex.config_path)]
    command += [str(item) for item in ids]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, cwd=REPO, timeout=60
    )


# Two messages Asterisk never sends: a repeated Event header (panoramisk makes its value a
# list) and a block of bytes that are not UTF-8 with no header at all.
MALFORMED = (
    b"Event: Hangup\r\nEvent: Newchannel\r\nUniqueid: 1.1\r\nCause: x\r\n\r\n",
    b"\xff\xfe\x00garbage without a colon\r\n\r\n",
)


async def test_queue_virtual_hold_and_ami_faults_from_outside_lose_no_stay_callback_or_row(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    proxy_port = free_port()
    with exchange(
        installation,
        tmp_path,
        phones=agents("2001"),
        kcc_agents=["2001"],
        kcc_toml=QUEUE_KCC,
        extra_toml=queue_toml(),
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()  # its AMI on ports.ami; serve reaches it through the proxy
        toml = ex.config_path.read_text()
        ex.config_path.write_text(
            toml.replace(f"ami_port = {ex.ports.ami}\n", f"ami_port = {proxy_port}\n", 1)
        )
        proxy = AmiProxy(proxy_port, ex.ports.ami)
        proxy.start()
        try:
            ex.start_serve()
            await ami_connected(ex)
            ex.agent_phone("2001", ring_ms=300, talk_ms=3000)
            ex.register("2001")
            await sign_in(ex, "2001")
            await queue_faults(ex)
            await ami_faults(ex, proxy)
            await virtual_hold_faults(ex)
        finally:
            proxy.close()


def stays(ex: Exchange, caller: str) -> list[Any]:
    return ex.rows("SELECT outcome FROM queue_calls WHERE caller = :c", c=caller)


async def in_line(ex: Exchange, caller: str, hold_ms: int = 20_000) -> None:
    """A citizen who presses 0 for the KCC's line; the agent answers and hangs up (the call
    ends then: `hold_ms` is how long the caller would wait on a busy machine)."""
    result = await ex.call("14070", caller=caller, keys="0", key_delay_ms=1000, hold_ms=hold_ms)
    assert result.returncode == 0, result.stderr[-500:]


async def queue_faults(ex: Exchange) -> None:
    db = database(ex)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON queue_calls "
        f"WHEN NEW.caller = '{POISON}' BEGIN SELECT RAISE(ABORT, 'caller refused'); END"
    )
    await in_line(ex, POISON)
    aside = await until(
        lambda: ex.rows("SELECT source, error FROM set_aside WHERE source = 'queue events'")
    )
    assert "caller refused" in aside[0].error
    await in_line(ex, CALLER)
    await until(lambda: [row.outcome for row in stays(ex, CALLER)] == ["answered"], timeout=20)
    assert not stays(ex, POISON)
    db.execute("DROP TRIGGER refuse_poison")

    # Another program holds the database's write lock while a caller joins the line.
    locked = "0612300021"
    db.execute("BEGIN IMMEDIATE")
    try:
        call = asyncio.create_task(in_line(ex, locked))
        # Held until the stay waits for it (the call's own events wait already).
        await until(lambda: "keeping a queue events item" in ex.serve_log.read_text(), timeout=40)
        assert not stays(ex, locked)
    finally:
        db.execute("ROLLBACK")
    await call
    await until(lambda: [row.outcome for row in stays(ex, locked)] == ["answered"], timeout=30)
    assert ex.health()[0] == 200


async def ami_faults(ex: Exchange, proxy: AmiProxy) -> None:
    connections = proxy.connections
    proxy.inject(*MALFORMED)
    caller = "0612300022"
    await in_line(ex, caller)
    assert proxy.injected, "the proxy had no message to put them after"
    await until(lambda: [row.outcome for row in stays(ex, caller)] == ["answered"], timeout=20)
    await until(lambda: ex.rows("SELECT outcome FROM calls WHERE caller = :c", c=caller)[0][0])
    assert proxy.connections == connections  # the connection stayed up
    # The one that does not parse (the repeated header) is counted for the operator.
    assert metric(ex, "bereik_ami_event_failures_total", subscriber=READER) == 1
    assert ex.health()[0] == 200

    # The connection killed in the middle of a message while a call is in line. The agent
    # is paused meanwhile, so the call is still waiting when the connection is back: a call
    # that is rung, answered and over within the gap leaves no trace in AMI to find (AMI
    # does not replay), which is not what this checks.
    cut = "0612300023"
    member = "PJSIP/2001 queue kcc"
    ex.cli(f"queue pause member {member}")
    call = asyncio.create_task(in_line(ex, cut, hold_ms=30_000))
    await until(lambda: stays(ex, cut), timeout=30)
    proxy.cut_mid_message()
    await until(lambda: proxy.cuts == 1, timeout=10)
    await until(lambda: ex.health()[1]["ami"] != "connected", timeout=10)
    # Back within the AMI client's backoff (0.5 s doubling, at most 4 s).
    await ami_connected(ex, timeout=10)
    assert proxy.connections == connections + 1
    ex.cli(f"queue unpause member {member}")
    await call

    def complete() -> list[Any]:
        rows = ex.rows("SELECT outcome, answered_by, ended_at FROM calls WHERE caller = :c", c=cut)
        return rows if rows and all(row.outcome and row.ended_at for row in rows) else []

    rows = await until(complete, timeout=30)
    assert len(rows) == 1 and rows[0].answered_by == "kcc", rows
    outcomes = await until(lambda: [row.outcome for row in stays(ex, cut) if row.outcome])
    assert len(outcomes) == 1, outcomes


async def virtual_hold_faults(ex: Exchange) -> None:
    """The database refuses a virtual hold's last stage (the citizen reached): the callback
    is made in the caller's turn all the same, once; the stage waits aside, the row at its
    earlier state, until `bereik events retry` writes it.

    The virtual hold starts as the row a caller's 1 in line leaves (agi/handlers/queue.py;
    tests/e2e/test_queue.py presses it): a real caller would add half a minute of
    prompts to what this checks, which is everything after the row."""
    db = database(ex)
    db.execute(
        "CREATE TRIGGER refuse_reached BEFORE UPDATE ON virtual_holds "
        "WHEN NEW.status = 'reached' BEGIN SELECT RAISE(ABORT, 'reached refused'); END"
    )
    citizen = ex.citizen("answer", ring_ms=300, hold_ms=1000)
    member = "PJSIP/2001 queue kcc"
    ex.cli(f"queue pause member {member}")  # the placeholder waits in line for its turn
    number = "0612300024"
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's form of a UTC time
    db.execute(
        "INSERT INTO virtual_holds (queue, call_uniqueid, number, priority, arrived_at, "
        "requested_at, status, attempts, next_at, agent) "
        "VALUES ('kcc', '1795978677.99', ?, ?, ?, ?, 'pending', 0, ?, '')",
        (number, 1_000_000_000 - int(now.timestamp() * 100) % 1_000_000_000, stamp, stamp, stamp),
    )
    holds = "SELECT number, status, attempts FROM virtual_holds"
    await until(lambda: ex.rows(holds) == [(number, "queued", 0)], timeout=20)
    ex.cli(f"queue unpause member {member}")

    def aside() -> list[Any]:
        return ex.rows("SELECT id, error FROM set_aside WHERE source = 'virtual hold events'")

    refused = await until(aside, timeout=40)
    assert len(refused) == 1 and "reached refused" in refused[0].error, refused
    # The callback was made, in its turn, once: the agent had it, the citizen was rung.
    assert ex.rows(holds) == [(number, "calling", 0)]  # the stage before the refused one
    invites = [
        m
        for m in sipplog.read(ex.workdir / "citizen-answer-messages.log")
        if not m.sent and m.method == "INVITE"
    ]
    assert [m.user("to") for m in invites] == [number], invites
    assert citizen.poll() is None or citizen.returncode == 0
    assert ex.health()[0] == 200

    db.execute("DROP TRIGGER refuse_reached")
    done = await events_retry(ex, refused[0].id)  # this one: the refused stay is not ours
    assert done.returncode == 0 and "written" in done.stdout, done.stdout + done.stderr
    assert ex.rows(holds) == [(number, "reached", 0)]
