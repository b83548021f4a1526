"""Live service norms end to end: sipp calls, the AMI listener, a real Prometheus scraping.

One exchange (the KCC and team Vergunningen), one Prometheus scraping `bereik serve` every
second. Calls: answered by the KCC, abandoned while the KCC rings, to the team number and
answered, and one answered by the KCC that is cut by an Asterisk restart. Prometheus must
then show each call counted once, the gap in `bereik_ami_connected`, and the norm ratio;
every dashboard and rule expression must evaluate against it. A second test has the KCC
agent blind-transfer (SIP REFER) two callers to the team number: one a member answers, one
that rings out to a hopper; each is counted once, with its transfer result.

Set BEREIK_RECORD_AMI=<path> to keep the raw AMI stream of the run (the replay data of
tests/unit/test_call_tracker.py and bench/ami_ingest.py are recorded this way).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench.exchange import REPO, Exchange, Phone, exchange, free_port
from cti.store.models import Hopper
from dialplan import asterisk
from dialplan.render import load_secrets
from tests.support.backends import on_both_backends
from tests.support.prometheus import Prometheus
from tests.support.teams import transfer_phone

TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7101"
members = ["2101"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
lead_mailbox = "lead.vergunningen@gemeente.example"
"""
# No greeting: a 14070 caller goes straight to the KCC (the harness keeps the exchange open
# around the clock).
NO_GREETING = """
[menu]
greeting = ""
"""


class AmiTap:
    """A second AMI login that keeps the raw bytes Asterisk sends, for replay tests."""

    def __init__(self, ex: Exchange, path: Path) -> None:
        self.ex, self.path = ex, path
        self.task: asyncio.Task[None] | None = None
        self.out = open(path, "ab")  # open for the tap's lifetime

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        secret = load_secrets(self.ex.host_instance / "secrets.json", self.ex.config).ami
        out = self.out
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.ex.ports.ami)
            except OSError:
                await asyncio.sleep(0.2)  # Asterisk restarting
                continue
            login = (
                f"Action: Login\r\nUsername: {self.ex.config.asterisk.ami_user}\r\n"
                f"Secret: {secret}\r\nEvents: on\r\n\r\n"
            )
            writer.write(login.encode())
            while data := await reader.read(65536):
                out.write(data)
                out.flush()
            writer.close()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.out.close()


@pytest.fixture
async def norms(
    installation: asterisk.Installation, tmp_path: Path
) -> AsyncIterator[tuple[Exchange, Prometheus]]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("2101", free_port(), "Vera")]
    with exchange(
        installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=NO_GREETING
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        prometheus = Prometheus(tmp_path, ex.ports.http)
        tap = None
        if os.environ.get("BEREIK_RECORD_AMI"):
            tap = AmiTap(ex, Path(os.environ["BEREIK_RECORD_AMI"]))
            await tap.start()
        try:
            prometheus.wait_ready()
            yield ex, prometheus
        finally:
            if tap:
                await tap.stop()
            prometheus.close()


# How long a caller who should be answered stays on the line: the menu, the ringing and
# the answer must fit in it on a busy machine (800 ms did not, for the first call after an
# Asterisk restart).
ANSWERED_HOLD_MS = 5000


@on_both_backends
async def test_prometheus_sees_each_call_once_and_the_norm(
    norms: tuple[Exchange, Prometheus],
) -> None:
    ex, prom = norms
    await prom.until('bereik_ami_connected{job="bereik"}', 1)

    # Two callers answered by the KCC.
    kcc_phone = ex.phone("2001", ring_ms=300)
    for _ in range(2):  # one after the other: one agent, and no waiting line is tested here
        result = await ex.call("14070", hold_ms=ANSWERED_HOLD_MS, key_delay_ms=200)
        assert result.returncode == 0, result.stderr

    # A caller gives up while the KCC phone rings.
    _stop(kcc_phone)
    ringing = ex.phone("2001", mode="noanswer")
    result = await ex.call("14070", caller="0702222222", hold_ms=1500, key_delay_ms=200)
    assert result.returncode == 0, result.stderr
    _stop(ringing)

    # A caller dials the team number; Vera answers.
    ex.phone("2101", ring_ms=300)
    result = await ex.call("7101", caller="0703333333", hold_ms=ANSWERED_HOLD_MS, key_delay_ms=200)
    assert result.returncode == 0, result.stderr

    await prom.until('bereik_calls_answered_total{team="kcc"}', 2)
    await prom.until('bereik_calls_answered_total{team="vergunningen"}', 1)
    await prom.until('bereik_calls_abandoned_total{team="kcc"}', 1)
    await prom.until('bereik_calls_offered_total{entry="14070"}', 3)
    await prom.until('bereik_calls_offered_total{entry="team"}', 1)

    # A KCC call in progress when Asterisk goes down: counted answered once, ended by the
    # resync after the restart (its hangup was never seen).
    ex.phone("2001", ring_ms=300)
    cut = asyncio.create_task(
        ex.call("14070", caller="0704444444", hold_ms=30_000, key_delay_ms=200, timeout_s=40)
    )
    await prom.until('bereik_calls_answered_total{team="kcc"}', 3)
    ex.asterisk.stop()
    await prom.until('bereik_ami_connected{job="bereik"}', 0)
    ex.start_asterisk()
    await prom.until('bereik_ami_connected{job="bereik"}', 1, timeout=30)
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    await prom.until('bereik_calls_offered_total{entry="14070"}', 4)

    # One more after the restart: the counters go on from where they were.
    result = await ex.call("14070", caller="0705555555", hold_ms=ANSWERED_HOLD_MS, key_delay_ms=200)
    assert result.returncode == 0, result.stderr
    await prom.until('bereik_calls_offered_total{entry="14070"}', 5)
    await prom.until('bereik_calls_answered_total{team="kcc"}', 4)
    await prom.until('bereik_wait_seconds_count{team="kcc"}', 4)
    assert prom.value('bereik_calls_abandoned_total{team="kcc"}') == 1
    assert prom.value('bereik_calls_waiting{team="kcc"}') == 0
    # The gap: AMI was down for a while during the last minutes.
    assert prom.value('min_over_time(bereik_ami_connected{job="bereik"}[5m])') == 0

    outcomes = sorted(
        (r.caller, r.outcome, r.team_id)
        for r in ex.rows("SELECT caller, outcome, team_id FROM calls")
    )
    assert outcomes == [
        ("0612345678", "answered_kcc", "kcc"),
        ("0612345678", "answered_kcc", "kcc"),
        ("0702222222", "abandoned", "kcc"),
        ("0703333333", "answered_team", "vergunningen"),
        ("0704444444", "answered_kcc", "kcc"),
        ("0705555555", "answered_kcc", "kcc"),
    ]
    abandoned = ex.rows("SELECT wait_seconds FROM calls WHERE outcome = 'abandoned'")[0]
    assert 1.0 < abandoned.wait_seconds < 5.0

    # The norm: every answered call met it. A hopper of Vergunningen past its deadline
    # (made by the team's no-answer path in production; written here directly) misses it.
    await prom.until('bereik_service_norm_ratio{team="kcc",window="today"}', 1.0)
    await prom.until('bereik_service_norm_ratio{team="vergunningen",window="today"}', 1.0)
    now = datetime.now(UTC)
    engine = create_engine(ex.sync_database_url)
    with Session(engine) as session:
        session.add(
            Hopper(
                team_id="vergunningen",
                caller="0706666666",
                reason="no_answer",
                created_at=now - timedelta(seconds=30),
                deadline=now - timedelta(seconds=10),
            )
        )
        session.commit()
    engine.dispose()
    await prom.until('bereik_service_norm_ratio{team="vergunningen",window="today"}', 0.5)
    await prom.until('bereik_hoppers_overdue{team="vergunningen"}', 1)

    # Every expression of the wall screens and the rules works against this Prometheus.
    check = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "deploy/grafana/check_expressions.py"),
        "--url",
        prom.url,
        "--require-data",
        # This exchange's KCC is a ring group: the waiting line's series are not exported.
        "--allow-empty",
        "bereik_queue_",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(check.communicate(), 120)
    assert check.returncode == 0, output.decode()


@on_both_backends
async def test_prometheus_counts_blind_transfers_answered_and_not_answered_once(
    norms: tuple[Exchange, Prometheus],
) -> None:
    ex, prom = norms
    await prom.until('bereik_ami_connected{job="bereik"}', 1)

    # Anna (KCC) answers a 14070 call and blind-transfers it (REFER) to 7101; Vera answers.
    agent = _transfer_phone(ex, "7101")
    vera = ex.phone("2101", ring_ms=300)
    result = await ex.call("14070", caller="0701111111", hold_ms=3000, key_delay_ms=200)
    assert result.returncode == 0, result.stderr
    # Asterisk sends the transferring phone no BYE (a desk phone hangs up by itself).
    _stop(agent)
    _stop(vera)

    # The same again, but Vera's phone only rings: after the team's 5 s the caller hears
    # the callback offer, keys nothing and hangs up (the hopper is on the caller's number).
    agent = _transfer_phone(ex, "7101")
    ex.phone("2101", mode="noanswer")
    result = await ex.call(
        "14070", caller="0702222222", hold_ms=15_000, key_delay_ms=200, timeout_s=60
    )
    assert result.returncode == 0, result.stderr

    transfers = 'bereik_transfers_total{to_team="vergunningen",result="%s"}'
    await prom.until(transfers % "answered", 1)
    await prom.until(transfers % "no_answer", 1)
    await prom.until('bereik_hoppers_created_total{team="vergunningen",reason="no_answer"}', 1)
    await prom.until('bereik_calls_offered_total{entry="14070"}', 2)
    # Each call counted once: offered once (not again as "team" when it reached 7101),
    # answered once, at its first answer (the KCC's), never abandoned.
    assert prom.value('bereik_calls_offered_total{entry="team"}') == 0
    assert prom.value('bereik_calls_offered_total{entry="internal"}') == 0
    assert prom.value('bereik_calls_answered_total{team="kcc"}') == 2
    assert prom.value('bereik_calls_answered_total{team="vergunningen"}') == 0
    assert prom.value('bereik_wait_seconds_count{team="kcc"}') == 2
    assert prom.value('sum(bereik_calls_abandoned_total{job="bereik"})') == 0
    assert prom.value('sum(bereik_transfers_total{job="bereik"})') == 2
    assert prom.value('sum(bereik_hoppers_created_total{job="bereik"})') == 1
    assert prom.value('sum(bereik_calls_waiting{job="bereik"})') == 0

    # The outcomes as the tracker and the listener define them: a transfer a member
    # answered is answered by the team; one nobody answered ended in its hopper.
    calls = sorted(
        (r.caller, r.answered_by, r.outcome, r.team_id, r.agent)
        for r in ex.rows("SELECT caller, answered_by, outcome, team_id, agent FROM calls")
    )
    assert calls == [
        ("0701111111", "kcc", "answered_team", "vergunningen", "2101"),
        ("0702222222", "kcc", "hopper", "vergunningen", "2001"),
    ]
    hoppers = ex.rows("SELECT caller, team_id, reason, agent FROM hoppers")
    assert [tuple(h) for h in hoppers] == [("0702222222", "vergunningen", "no_answer", "2001")]


def _transfer_phone(ex: Exchange, target: str) -> subprocess.Popen[bytes]:
    """KCC Anna's phone for one call: answer, talk briefly, REFER the caller to `target`."""
    transfer_phone(ex, "2001", target, talk_ms=800)
    return ex.sipp_processes[-1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 9)
    process.wait()
