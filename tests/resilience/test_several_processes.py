"""Several `bereik serve` on one PostgreSQL database share the work and do it once.

Calls reach the processes through HAProxy (deploy/haproxy/bereik-fastagi.cfg); each
caller takes IVR → team → callback offer → hopper (every member absent), as in
test_sustained_load.py, with a real SMTP server as the group mailbox.

2. kill -9 of one of two processes in the middle of the calls: no call dropped; only
   sessions that the killed process held take the fallback (counted; the killed
   process's log names each), none after; every call row decided.
3. kill -9 of the process that owns the AMI call tracking (cti/calls/lease.py) in the
   middle of the calls: the other takes the lease within 10 s, and every call, also those
   of the takeover window, has one row with its outcome.
4. A rolling restart (SIGTERM, start, the next) during the calls: 0 fallbacks.

The agent's live stream (server-sent events) shows a call ringing at the agent's phone on
whichever process the browser is connected to: each process follows AMI for its screens.

5. Outbox: three processes send the due mails; first undisturbed, then with `kill -9`s of
   random processes (each restarted at once). Every mail arrives; in the undisturbed
   round none twice. Under kills a mail may arrive twice only when its process died
   between the server's "250 OK" and the commit that marks it sent (the outbox is
   at-least-once there, cti/outbox.py): the test counts and prints those, at most one per kill.
   Virtual-hold callbacks: 200 due, three processes with `kill -9`s of random ones: each
   is originated once (one placeholder in Asterisk's line per callback, none missing).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, insert, text

from bench.exchange import (
    Exchange,
    Phone,
    ServeProcess,
    SippResult,
    exchange,
    free_port,
    until,
)
from cti.ami.channels import VHOLD_PLACEHOLDER
from cti.store.db import migrate_async
from cti.store.models import OutboxMail, VirtualHold
from dialplan import asterisk
from tests.postgres import PostgresCluster
from tests.resilience.figures import Figures

# The load test's call shape: menu key 1 to the team, whose members are all absent.
from tests.support.calibration import Calibrations
from tests.support.load import KEYS, MENU, TEAM, load_rate
from tests.support.mail import Smtp
from tests.support.processes import serve_of, start_processes, tracking_lease
from tests.support.users import PASSWORD, add_users
from tests.support.waiting_line import feature_code as queue_feature_code

# The load tests run alone on the machine (`solo`: scripts/test runs them after the
# parallel ones): they calibrate their call rate on this machine's CPU. The outbox, the
# virtual holds through kills and the live stream measure nothing and run with the rest.

PROCESSES = 3
CALM_MAILS = 500
KILLED_MAILS = 1000
KILLS = 6


def queue_mails(ex: Exchange, prefix: str, count: int) -> None:
    engine = create_engine(ex.sync_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(OutboxMail),
                [
                    {
                        "key": f"{prefix}-{n}",
                        "recipient": "team@gemeente.example",
                        "subject": f"{prefix} {n}",
                        "body": "Terugbelverzoek",
                    }
                    for n in range(count)
                ],
            )
    finally:
        engine.dispose()


def unsent(ex: Exchange) -> int:
    return int(ex.rows("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].n)


def received(smtp: Smtp, prefix: str) -> collections.Counter[str]:
    return collections.Counter(
        str(m["X-Bereik-Outbox"])
        for m in smtp.mailbox.messages
        if str(m["X-Bereik-Outbox"]).startswith(f"{prefix}-")
    )


async def kill_at_random(
    serves: list[ServeProcess], kills: int, between: tuple[float, float]
) -> int:
    """`kill -9` of a random process (restarted at once), `kills` times, a random pause
    of `between` seconds before each; returns the seed, to print and to replay a run."""
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    for _ in range(kills):
        await asyncio.sleep(chance.uniform(*between))
        victim = chance.choice(serves)
        await asyncio.to_thread(victim.stop, True)
        victim.start(wait=False)
    return seed


async def test_three_processes_send_each_outbox_mail_once_through_random_kills(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    figures: Figures,
) -> None:
    figures.title = "5. outbox, 3 processes with random `kill -9`s"
    with exchange(installation, tmp_path, database_url=postgres.new_database()) as ex:
        await migrate_async(ex.database_url)
        smtp = Smtp(ex.ports.smtp)
        smtp.start()
        serves: list[ServeProcess] = [ex.add_serve() for _ in range(PROCESSES)]
        try:
            # Undisturbed: the three start at once on the same due mails.
            queue_mails(ex, "calm", CALM_MAILS)
            started = time.monotonic()
            for serve in serves:
                serve.start(wait=False)
            for serve in serves:
                serve.wait_ready()
            await until(lambda: unsent(ex) == 0, timeout=120)
            calm_seconds = time.monotonic() - started
            calm = received(smtp, "calm")
            figures["processes"] = PROCESSES
            figures["mails, undisturbed"] = CALM_MAILS
            figures["sent in s"] = round(calm_seconds, 1)
            figures["duplicates, undisturbed"] = sum(n - 1 for n in calm.values())
            shares = [serve.log.read_text().count("mail calm-") for serve in serves]
            figures["sent per process, undisturbed"] = "/".join(map(str, shares))
            assert len(calm) == CALM_MAILS
            assert all(shares), "each process sends a share"
            assert max(calm.values()) == 1, "no mail twice when no process dies"

            # kill -9 of a random process every 0.5-2 s while 1000 mails are due.
            queue_mails(ex, "killed", KILLED_MAILS)
            started = time.monotonic()
            seed = await kill_at_random(serves, KILLS, (0.5, 2.0))
            # A killed process's claim runs out (cti/outbox.py CLAIM_SECONDS) before
            # another sends what it held.
            await until(lambda: unsent(ex) == 0, timeout=180)
            killed_seconds = time.monotonic() - started
            killed = received(smtp, "killed")
            duplicates = sum(n - 1 for n in killed.values())
            figures["random seed"] = seed
            figures["mails, with kills"] = KILLED_MAILS
            figures["kill -9s"] = KILLS
            figures["all sent in s"] = round(killed_seconds, 1)
            figures["duplicates, with kills"] = duplicates
            assert len(killed) == KILLED_MAILS, "every mail arrives"
            assert duplicates <= KILLS, "at most the one mail in flight per kill"
            rows = ex.rows(
                "SELECT count(*) AS n FROM outbox "
                "WHERE sent_at IS NOT NULL AND claimed_until IS NULL"
            )
            assert rows[0].n == CALM_MAILS + KILLED_MAILS
        finally:
            smtp.stop()
            for serve in serves:
                serve.stop()


CALLBACKS = 200
CALLBACK_KILLS = 4


def queue_callbacks(ex: Exchange, count: int) -> None:
    """Callers who pressed 1 in the line earlier: their callbacks are due now."""
    now = datetime.now(UTC)
    engine = create_engine(ex.sync_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(VirtualHold),
                [
                    {
                        "queue": "kcc",
                        "call_uniqueid": f"due-{n}",
                        "number": f"061200{n:04d}",
                        "priority": 0,
                        "arrived_at": now,
                        "requested_at": now,
                        "status": "pending",
                        "attempts": 0,
                        "next_at": now,
                        "agent": "",
                    }
                    for n in range(count)
                ],
            )
    finally:
        engine.dispose()


def placeholders(ex: Exchange) -> collections.Counter[int]:
    """Placeholders in Asterisk per virtual hold (the ;1 half of each Local channel)."""
    counts: collections.Counter[int] = collections.Counter()
    for line in ex.cli("core show channels concise").splitlines():
        found = VHOLD_PLACEHOLDER.match(line)
        if found and ";1!" in line:
            counts[int(found["id"])] += 1
    return counts


async def test_three_processes_originate_each_due_callback_once_through_random_kills(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    figures: Figures,
) -> None:
    figures.title = "5. virtual-hold callbacks, 3 processes with random `kill -9`s"
    with exchange(
        installation,
        tmp_path,
        phones=[Phone("2001", free_port(), "Agent 2001", registers=True)],
        kcc_agents=["2001"],
        kcc_toml='mode = "queue"',
        # No second try within the test: a second placeholder would be a second attempt.
        extra_toml="\n[queue]\ncallback_retry_seconds = 3600\n",
        database_url=postgres.new_database(),
        agi_proxy=True,
    ) as ex:
        serves = start_processes(ex, PROCESSES)
        ex.start_agi_proxy(serves)
        ex.start_asterisk()
        try:
            # One agent signed in and paused: the placeholders wait in the line.
            ex.register("2001")
            await queue_feature_code(ex, ex.config.queue.sign_in_code, "2001")
            await until(lambda: "PJSIP/2001" in ex.cli("queue show kcc"), timeout=20)
            await queue_feature_code(ex, ex.config.queue.pause_code, "2001")
            await until(lambda: "paused" in ex.cli("queue show kcc"), timeout=20)
            queue_callbacks(ex, CALLBACKS)
            started = time.monotonic()
            seed = await kill_at_random(serves, CALLBACK_KILLS, (0.3, 1.5))

            def unplaced() -> int:
                return int(
                    ex.rows("SELECT count(*) AS n FROM virtual_holds WHERE status <> 'queued'")[0].n
                )

            # A killed process's claim runs out (cti/queue/vhold.py PLACING_SECONDS) before
            # another looks whether its placeholder exists.
            await until(lambda: unplaced() == 0, timeout=180)
            placed_s = time.monotonic() - started
            await asyncio.sleep(3)  # a placeholder originated twice would show by now
            counts = placeholders(ex)
            ids = {row.id for row in ex.rows("SELECT id FROM virtual_holds")}
            figures["processes"] = PROCESSES
            figures["due callbacks"] = CALLBACKS
            figures["random seed"] = seed
            figures["kill -9s"] = CALLBACK_KILLS
            figures["all placed in s"] = round(placed_s, 1)
            figures["placeholders in the line"] = sum(counts.values())
            figures["callbacks originated twice"] = sum(1 for n in counts.values() if n > 1)
            figures["callbacks never originated"] = len(ids - set(counts))
            logs = "".join(s.log.read_text() for s in serves)
            figures["claims of killed processes: found placed"] = logs.count(
                "placed by a process that stopped"
            )
            figures["claims of killed processes: placed now"] = logs.count("claim ran out unplaced")
            assert set(counts) == ids, "every callback originated"
            assert max(counts.values()) == 1, "none twice"
        finally:
            for serve in serves:
                serve.stop()


# The call tests run at half the capacity a measured batch shows on this machine (the
# load test's calibration, on each test's setup, measured once per run), at most 20
# calls/s; BEREIK_MULTI_RATE forces a rate.
FORCED_RATE = float(os.environ.get("BEREIK_MULTI_RATE", "0"))
SECONDS = int(os.environ.get("BEREIK_MULTI_SECONDS", "40"))
PREFIX = "06551"
PAIR = "IVR → team → hopper, two bereik serve behind HAProxy, PostgreSQL"
ONE_ON_POSTGRES = "IVR → team → hopper, one bereik serve, PostgreSQL"


@contextlib.contextmanager
def absent_team(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    agi_proxy: bool = False,
) -> Iterator[tuple[Exchange, Smtp]]:
    """An exchange on its own PostgreSQL database, its SMTP server running. Once a process
    has made the schema, mark_absent() sends each call to the callback offer."""
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Carla"),
        Phone("3002", free_port(), "Daan"),
    ]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        teams_toml=TEAM,
        extra_toml=MENU,
        database_url=postgres.new_database(),
        agi_proxy=agi_proxy,
    ) as ex:
        smtp = Smtp(ex.ports.smtp)
        smtp.start()
        try:
            yield ex, smtp
        finally:
            smtp.stop()


@pytest.fixture
def pair(
    installation: asterisk.Installation, tmp_path: Path, postgres: PostgresCluster
) -> Iterator[tuple[Exchange, list[ServeProcess], Smtp]]:
    """Asterisk, HAProxy and two `bereik serve` on one PostgreSQL database."""
    with absent_team(installation, tmp_path, postgres, agi_proxy=True) as (ex, smtp):
        serves = start_processes(ex, 2)
        mark_absent(ex)
        ex.start_agi_proxy(serves)
        ex.start_asterisk()
        yield ex, serves, smtp


def mark_absent(ex: Exchange) -> None:
    """What the members' *22 feature code does, written straight into the database."""
    engine = create_engine(ex.sync_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO presence (extension, present, changed_at, changed_by) "
                    "VALUES (:extension, false, :now, 'test')"
                ),
                [{"extension": e, "now": datetime.now(UTC)} for e in ("3001", "3002")],
            )
    finally:
        engine.dispose()


def store_failures_since(log: Path, since: datetime) -> int:
    """FastAGI sessions that took the fallback because the store failed, from `since`."""
    failed = re.compile(r"^(\S+ \S+) ERROR bereik\.agi: \[[^\]]*\] \w+: \w+ unavailable \(")
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        found = failed.match(line)
        if found and datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f") >= since:
            count += 1
    return count


async def every_call_decided(ex: Exchange, total: int) -> None:
    """Until each of the `total` calls has a row with its outcome (the last end a hold after
    sipp's last call)."""
    await until(
        lambda: (
            ex.rows(
                f"SELECT count(*) AS n FROM calls WHERE caller LIKE '{PREFIX}%' AND outcome <> ''"
            )[0].n
            >= total
        ),
        timeout=60,
    )


def fallbacks(ex: Exchange) -> list[str]:
    """Asterisk's log lines of calls that took a dialplan fallback."""
    log = ex.host_instance / "log" / "messages.log"
    return [line for line in log.read_text(errors="replace").splitlines() if "unavailable" in line]


@dataclasses.dataclass
class Load:
    rate: float
    total: int
    calls: asyncio.Task[SippResult]


async def place_calls(
    ex: Exchange, figures: Figures, calibrations: Calibrations, path: str = PAIR
) -> Load:
    """Start the calls (SECONDS long) at the forced rate or the one calibrated on `path`."""
    rate = FORCED_RATE or (await load_rate(path, ex, calibrations, figures)).rate
    total = int(SECONDS * rate)
    figures["calls per second"] = rate
    figures["seconds"] = SECONDS
    task = asyncio.create_task(
        ex.call(
            "14070",
            caller=f"{PREFIX}[call_number]",
            keys=KEYS,
            key_delay_ms=1500,
            hold_ms=30_000,
            calls=total,
            rate=rate,
            limit=total,
            timeout_s=SECONDS + 120,
        )
    )
    return Load(rate, total, task)


async def check_every_call_made_one_hopper_and_one_mail(
    ex: Exchange, smtp: Smtp, load: Load, figures: Figures
) -> None:
    total = load.total
    result = await load.calls
    counts = result.counts()
    await until(
        lambda: (
            ex.rows(f"SELECT count(*) AS n FROM hoppers WHERE caller LIKE '{PREFIX}%'")[0].n
            >= total
        ),
        timeout=30,
    )
    hoppers = ex.rows(f"SELECT id, caller, repeat_count FROM hoppers WHERE caller LIKE '{PREFIX}%'")
    expected = {f"hopper-{h.id}-created" for h in hoppers}
    await until(lambda: expected <= {str(m["X-Bereik-Outbox"]) for m in smtp.mailbox.messages}, 120)
    await asyncio.sleep(2)  # a mail sent twice would arrive within the next round
    calls = ex.rows(f"SELECT uniqueid FROM calls WHERE caller LIKE '{PREFIX}%'")
    mails = collections.Counter(str(m["X-Bereik-Outbox"]) for m in smtp.mailbox.messages)
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    figures["call rows"] = len(calls)
    figures["hoppers"] = len(hoppers)
    figures["mails"] = sum(mails[key] for key in expected)
    figures["mails twice"] = sum(1 for n in mails.values() if n > 1)
    assert counts.get("TotalCallCreated") == total
    assert counts.get("FailedCall(C)") == 0, result.stderr[-2000:]
    assert len({c.uniqueid for c in calls}) == len(calls) == total
    assert len({h.caller for h in hoppers}) == len(hoppers) == total
    assert all(h.repeat_count == 0 for h in hoppers)
    assert all(n == 1 for n in mails.values())


@pytest.mark.solo
async def test_rolling_restart_of_two_processes_under_calls_takes_no_fallback(
    pair: tuple[Exchange, list[ServeProcess], Smtp],
    figures: Figures,
    calibrations: Calibrations,
) -> None:
    ex, serves, smtp = pair
    figures.title = "4. rolling restart of 2 processes under calls"
    load = await place_calls(ex, figures, calibrations)
    restarts = []
    for serve in serves:
        await asyncio.sleep(SECONDS / 4)
        started = time.monotonic()
        status = await asyncio.to_thread(serve.stop)  # SIGTERM: drain, then exit
        serve.start(wait=False)
        await asyncio.to_thread(serve.wait_ready)
        restarts.append(round(time.monotonic() - started, 1))
        assert status == 0, f"bereik serve exited with {status} on SIGTERM"
    figures["restart s (drain + start), each"] = "/".join(map(str, restarts))
    await check_every_call_made_one_hopper_and_one_mail(ex, smtp, load, figures)
    lines = fallbacks(ex)
    figures["fallbacks"] = len(lines)
    assert lines == [], lines[:5]


# Asterisk's fallback lines (deploy/asterisk/dialplan/*.conf.j2): which handler failed,
# for which channel; and `bereik serve`'s session lines (agi/server.py): "[uniqueid] handler:".
FALLBACK = re.compile(
    r"Bereik (IVR|team handler|hopper handler|queue handler) unavailable "
    r"\(AGISTATUS=\w*\); (\S+) "
)
HANDLER_OF = {
    "IVR": "ivr",
    "team handler": "team",
    "hopper handler": "hopper",
    "queue handler": "queue",
}
SESSION = re.compile(r"\[(\S+)\] (\w+): ")


def fallback_sessions(ex: Exchange) -> list[tuple[str, str]]:
    """(handler, uniqueid) of each FastAGI session that took the dialplan's fallback."""
    return [(HANDLER_OF[m[1]], m[2]) for m in map(FALLBACK.search, fallbacks(ex)) if m]


def proxy_sessions_ended(ex: Exchange, server: str, since_byte: int) -> int:
    """FastAGI connections HAProxy had passed to `server` that ended after `since_byte` of
    its log (it writes a connection's line when the connection ends)."""
    with ex.agi_proxy_log.open("rb") as log:
        log.seek(since_byte)
        return log.read().decode(errors="replace").count(f" bereik/{server} ")


def sessions_in(log: Path, started_before: datetime | None = None) -> set[tuple[str, str]]:
    """(handler, uniqueid) of every FastAGI session a process's log names (that started
    before `started_before`, local time as the log has it)."""
    sessions = set()
    for line in log.read_text(errors="replace").splitlines():
        found = SESSION.search(line)
        if found is None:
            continue
        if started_before is not None:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            if stamp >= started_before:
                continue
        sessions.add((found[2], found[1]))
    return sessions


@pytest.mark.solo
async def test_kill_of_one_of_two_processes_costs_only_its_sessions(
    pair: tuple[Exchange, list[ServeProcess], Smtp],
    figures: Figures,
    calibrations: Calibrations,
) -> None:
    ex, serves, smtp = pair
    figures.title = "2. `kill -9` of 1 of 2 processes under calls"
    load = await place_calls(ex, figures, calibrations)
    figures["kill -9 at s"] = SECONDS / 2
    await asyncio.sleep(SECONDS / 2)
    victim = serves[0]
    assert victim.process is not None
    before = len(fallbacks(ex))
    proxy_log_at_kill = ex.agi_proxy_log.stat().st_size
    killed_at = datetime.now()  # local time, as the processes' logs write it
    await asyncio.to_thread(victim.stop, True)
    await asyncio.sleep(3)
    at_kill = len(fallbacks(ex)) - before
    result = await load.calls
    after = len(fallbacks(ex)) - before - at_kill
    failed = set(fallback_sessions(ex))
    # The sessions the killed process had at that instant: HAProxy's connections to it that
    # ended from then on. Its own log names most of them; not those still in its accept
    # queue, or read but not yet started, when it died.
    open_at_kill = proxy_sessions_ended(ex, "bereik1", since_byte=proxy_log_at_kill)
    named = sessions_in(victim.log)
    # The other process's sessions of that instant (a call whose session died goes on to
    # the fallback's own sessions, of the same handler and call, in the other process).
    survivor = sessions_in(serves[1].log, started_before=killed_at)
    figures["fallbacks before the kill"] = before
    figures["fallbacks within 3 s of the kill"] = at_kill
    figures["fallbacks later than 3 s after the kill"] = after
    figures["FastAGI connections the killed process had at the kill"] = open_at_kill
    figures["fallbacks of sessions its log names"] = len(failed & named)
    figures["fallbacks of sessions the other process had"] = len(failed & survivor)
    # What else sends a caller to the fallback: admission control on a machine too busy
    # for the rate (agi/admission.py); such a session is in no process's log.
    refused = sum(
        serve.log.read_text(errors="replace").count("refusing FastAGI connection")
        for serve in serves
    )
    figures["sessions refused by admission control"] = refused
    total = load.total
    counts = result.counts()
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    assert counts.get("TotalCallCreated") == total
    assert counts.get("FailedCall(C)") == 0, result.stderr[-2000:]
    assert before == 0 and after == 0
    assert len(failed) == at_kill
    # Only what the killed process had: nothing the other process had, nothing refused.
    assert not failed & survivor, sorted(failed & survivor)[:5]
    assert refused == 0
    assert len(failed) <= open_at_kill, (sorted(failed - named)[:5], open_at_kill)
    # A caller whose session died went to the KCC without a hopper; every hopper made
    # is mailed once, and every call has one row with its outcome.
    await every_call_decided(ex, total)
    # (A caller sent to the KCC by the fallback may get a KCC hopper; the KCC has no
    # group mailbox here.)
    hoppers = ex.rows(
        f"SELECT id FROM hoppers WHERE caller LIKE '{PREFIX}%' AND team_id = 'vergunningen'"
    )
    # The mails the killed process had claimed and not sent wait for its claim to run out
    # (cti/outbox.py CLAIM_SECONDS); then the other process sends them. Waiting for as
    # many mails as hoppers is not enough: the mailbox gets other mails too (in one run
    # the count was reached with three of these hoppers' mails still held by the claim).
    await until(lambda: unsent(ex) == 0, timeout=180)
    await smtp.mailbox.wait(len(hoppers), timeout=30)
    await asyncio.sleep(2)  # a mail sent twice would arrive within the next round
    mails = collections.Counter(str(m["X-Bereik-Outbox"]) for m in smtp.mailbox.messages)
    calls = ex.rows(f"SELECT uniqueid, outcome FROM calls WHERE caller LIKE '{PREFIX}%'")
    figures["hoppers"] = len(hoppers)
    figures["mails twice"] = sum(1 for n in mails.values() if n > 1)
    figures["call rows"] = len(calls)
    assert len(hoppers) >= total - at_kill
    assert {f"hopper-{h.id}-created" for h in hoppers} <= set(mails)
    assert all(n == 1 for n in mails.values())
    assert len({c.uniqueid for c in calls}) == len(calls) == total
    assert all(c.outcome for c in calls)


@pytest.mark.solo
async def test_tracking_owner_killed_standby_takes_over_within_10_s_each_call_recorded_once(
    pair: tuple[Exchange, list[ServeProcess], Smtp],
    figures: Figures,
    calibrations: Calibrations,
) -> None:
    ex, serves, _smtp = pair
    figures.title = "3. `kill -9` of the process owning the call tracking"
    lease = await until(lambda: tracking_lease(ex), timeout=30)
    owner = serve_of(lease.holder, serves)
    standby = next(s for s in serves if s is not owner)
    load = await place_calls(ex, figures, calibrations)
    await asyncio.sleep(SECONDS / 2)
    killed_at = time.monotonic()
    killed_when = datetime.now(UTC)
    await asyncio.to_thread(owner.stop, True)
    taken = await until(
        lambda: (row := tracking_lease(ex)) is not None and row.fence > lease.fence and row,
        timeout=30,
    )
    takeover_s = time.monotonic() - killed_at
    taken_when = datetime.now(UTC)
    result = await load.calls
    counts = result.counts()
    total = load.total
    await every_call_decided(ex, total)
    calls = ex.rows(
        f"SELECT uniqueid, outcome, started_at, ended_at FROM calls WHERE caller LIKE '{PREFIX}%'"
    )
    in_window = [
        c
        for c in calls
        if killed_when <= _aware(c.started_at) <= taken_when
        or (c.ended_at is not None and killed_when <= _aware(c.ended_at) <= taken_when)
    ]
    figures["calls placed"] = counts.get("TotalCallCreated")
    figures["calls dropped"] = counts.get("FailedCall(C)")
    figures["takeover s after the kill -9"] = round(takeover_s, 1)
    figures["calls started or ended in the takeover window"] = len(in_window)
    figures["call rows"] = len(calls)
    figures["call rows without an outcome"] = sum(1 for c in calls if not c.outcome)
    assert taken.holder.endswith(f":{standby.process.pid}") if standby.process else False
    assert takeover_s < 10
    assert counts.get("TotalCallCreated") == total
    assert in_window, "no call started or ended while nobody owned the tracking"
    assert len({c.uniqueid for c in calls}) == len(calls) == total
    assert all(c.outcome and c.ended_at is not None for c in calls)


async def call_event(stream: aiohttp.ClientResponse, caller: str, state: str) -> float:
    """Read a live stream until the call from `caller` is in `state`; when that was."""
    while True:
        line = await stream.content.readline()
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            data = json.loads(line[len(b"data: ") :])
            if data.get("caller") == caller and data.get("state") == state:
                return time.monotonic()


async def test_agents_live_stream_shows_the_call_on_either_process(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    figures: Figures,
) -> None:
    figures.title = "live stream with 2 processes"
    caller = "0612340000"
    with exchange(
        installation, tmp_path, database_url=postgres.new_database(), agi_proxy=True
    ) as ex:
        serves = start_processes(ex, 2)
        ex.start_agi_proxy(serves)
        ex.start_asterisk()
        await add_users(ex, [("anna", "agent", "", "2001")])
        lease = await until(lambda: tracking_lease(ex), timeout=30)
        ex.phone("2001", ring_ms=1500)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            # Signed in on one process: the session is in the database, valid on both.
            base = f"http://127.0.0.1:{serves[0].http_port}"
            form = await (await http.get(f"{base}/login")).text()
            token = re.search(r'name="login_token" value="([^"]+)"', form)
            assert token, "no sign-in form"
            signed_in = await http.post(
                f"{base}/login",
                data={"name": "anna", "password": PASSWORD, "login_token": token[1]},
                allow_redirects=False,
            )
            assert not signed_in.headers["Location"].startswith("/login"), "not signed in"
            streams = [
                await http.get(f"http://127.0.0.1:{serve.http_port}/events") for serve in serves
            ]
            assert [s.status for s in streams] == [200, 200]
            started = time.monotonic()
            call = asyncio.create_task(ex.call("14070", caller=caller, hold_ms=6000, timeout_s=60))
            ringing = await asyncio.wait_for(
                asyncio.gather(*(call_event(s, caller, "ringing") for s in streams)), 30
            )
            answered = await asyncio.wait_for(
                asyncio.gather(*(call_event(s, caller, "answered") for s in streams)), 30
            )
            for stream in streams:
                stream.close()
            result = await call
        owner = serve_of(lease.holder, serves)
        figures["tracking owner"] = f"process {serves.index(owner) + 1}"
        figures["ringing seen after call start s, process 1/2"] = "/".join(
            f"{at - started:.1f}" for at in ringing
        )
        figures["answered seen, difference between the processes s"] = round(
            abs(answered[0] - answered[1]), 2
        )
        assert result.returncode == 0, result.stderr
        assert abs(ringing[0] - ringing[1]) < 1.0


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.mark.solo
async def test_postgresql_restart_under_calls_needs_no_manual_step(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    figures: Figures,
    calibrations: Calibrations,
) -> None:
    """6. PostgreSQL restarted (fast shutdown, start) in the middle of the calls: calls take
    the fallback at worst, none drops, nothing committed before is lost, and after the
    restart the calls make hoppers again without anyone touching `bereik serve`."""
    figures.title = "6. PostgreSQL restarted under calls"
    with absent_team(installation, tmp_path, postgres) as (ex, _smtp):
        ex.start_serve()
        mark_absent(ex)
        ex.start_asterisk()
        load = await place_calls(ex, figures, calibrations, ONE_ON_POSTGRES)
        await asyncio.sleep(SECONDS / 2)
        committed = ex.rows("SELECT id, caller FROM hoppers ORDER BY id")
        before = len(fallbacks(ex))
        down_at = time.monotonic()
        await asyncio.to_thread(postgres.restart)
        restarted_s = time.monotonic() - down_at
        # Sessions that were in a transaction when the server went away, and those
        # that found no server, take the fallback; a few seconds later none does.
        await asyncio.sleep(5)
        back_at = datetime.now()  # local time, as `bereik serve` logs it
        during = len(fallbacks(ex)) - before
        # After the restart: one more call through the whole path makes its hopper (placed
        # beside the load's last calls).
        after_call = asyncio.create_task(
            ex.call("14070", caller="0655299999", keys=KEYS, key_delay_ms=1500, hold_ms=30_000)
        )
        result = await load.calls
        after = await after_call
        later = len(fallbacks(ex)) - before - during
        counts = result.counts()
        await until(lambda: ex.rows("SELECT id FROM hoppers WHERE caller = '0655299999'"), 30)
        still = ex.rows("SELECT id, caller FROM hoppers ORDER BY id")
        figures["calls placed"] = counts.get("TotalCallCreated")
        figures["calls dropped"] = counts.get("FailedCall(C)")
        figures["PostgreSQL restart s"] = round(restarted_s, 1)
        figures["hoppers before the restart"] = len(committed)
        figures["fallbacks before"] = before
        figures["fallbacks during the restart (+5 s)"] = during
        figures["fallbacks later"] = later
        figures["store failures later"] = store_failures_since(ex.serve_log, back_at)
        figures["hoppers at the end"] = len(still)
        total = load.total
        await until(
            lambda: (
                ex.rows(f"SELECT count(*) AS n FROM calls WHERE caller LIKE '{PREFIX}%'")[0].n
                >= total
            ),
            timeout=30,
        )
        figures["call rows"] = ex.rows(
            f"SELECT count(*) AS n FROM calls WHERE caller LIKE '{PREFIX}%'"
        )[0].n
        assert before == 0
        # Later fallbacks could only be admission control's on a machine too busy for
        # the rate (they are counted above); none may be the store's.
        assert figures.values["store failures later"] == 0
        assert counts.get("FailedCall(C)") == 0, result.stderr[-2000:]
        assert after.returncode == 0, after.stderr
        assert set(map(tuple, committed)) <= set(map(tuple, still)), "nothing committed lost"
        assert "crashed" not in ex.serve_log.read_text(), "every worker goes on by itself"
