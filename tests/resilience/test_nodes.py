"""Two Asterisk nodes behind Kamailio (issue 15): calls spread, a node killed, a rolling
upgrade at peak, a drained node. Real Kamailio, two real Asterisks, one `bereik serve`
with an AMI connection to each, sipp as the trunk.

Rates: the issue asks 10 calls/s; this machine (2 cores, shared) may not hold that on
the whole path, so the CPU one call costs through Kamailio and both nodes is measured
(a batch at a low rate, once per run and path: tests/support/calibration.py), the load
tests run at half the capacity that gives (at most 10 calls/s) and print the rate.
``BEREIK_NODES_RATE`` forces a rate; ``BEREIK_ROLLING_SECONDS`` (default 120; the issue's
full run is 180) the rolling upgrade's length.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.cluster import Cluster, cluster
from bench.exchange import REPO, Exchange, SippResult, exchange, until
from cti.ami.nodes import AmiNodes
from cti.nodes import service as nodes_service
from cti.services import build_services
from cti.store.db import create_engine, migrate_async, sessions
from dialplan import asterisk
from dialplan.config import load
from dialplan.kamailio import rpc
from tests.resilience.figures import Figures
from tests.support.browser import axe, chromium, serious
from tests.support.browser import sign_in as browser_sign_in
from tests.support.calibration import Calibrations, Rate
from tests.support.users import add_users
from tests.support.waiting_line import PATIENT_SERVER, QUEUE_KCC, phone_calls, queue_toml, sign_in
from tests.support.waiting_line import agents as queue_agents

MAX_RATE = 10  # the rate
FORCED_RATE = float(os.environ.get("BEREIK_NODES_RATE", "0"))
CALIBRATION_CALLS, CALIBRATION_RATE = 20, 2
CALIBRATION_CALLER = "0655900000"


@pytest.fixture
def two_nodes(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(installation, tmp_path) as made:
        made.start_asterisk()
        yield made


def metric(ex: Cluster, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = "^" + re.escape(f"{name}{{{wanted}}}" if labels else name) + r" (\S+)$"
    found = re.search(pattern, ex.http_get("/metrics"), re.M)
    assert found, f"{name} {labels} not on /metrics"
    return float(found.group(1))


async def both_connected(ex: Cluster) -> None:
    """bereik serve has logged in to every node's AMI."""
    ports = [node.ami_port for node in ex.config.nodes]
    await until(
        lambda: all(
            f"AMI connected to 127.0.0.1:{port}" in ex.serve_log.read_text() for port in ports
        ),
        timeout=30,
    )


def per_node(ex: Exchange, where: str = "1=1") -> dict[str, int]:
    """Call rows per node: the node is the Uniqueid's prefix (its systemname)."""
    counts: dict[str, int] = {}
    for row in ex.rows(f"SELECT uniqueid FROM calls WHERE {where}"):
        node = row.uniqueid.split("-", 1)[0]
        counts[node] = counts.get(node, 0) + 1
    return counts


def utc(timestamp: float) -> str:
    """A time as the calls table stores it (UTC, naive ISO), for comparisons in SQL."""
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat(sep=" ")


def outcomes_of(ex: Cluster, caller: str) -> dict[str, int]:
    rows = ex.rows(
        "SELECT outcome, count(*) AS n FROM calls WHERE caller = :caller GROUP BY outcome",
        caller=caller,
    )
    return {row.outcome: row.n for row in rows}


async def calibration(
    ex: Cluster, calibrations: Calibrations, path: str, figures: Figures, hold_ms: int
) -> Rate:
    """The load's rate through Kamailio and both nodes, for calls of `hold_ms` on `path`
    (measured once per run)."""

    def batch() -> Awaitable[SippResult]:
        return ex.call(
            "14070",
            caller=CALIBRATION_CALLER,
            calls=CALIBRATION_CALLS,
            rate=CALIBRATION_RATE,
            hold_ms=hold_ms,
            key_delay_ms=100,
            timeout_s=60 + hold_ms // 1000,
        )

    return await calibrations.rate(
        path, batch, CALIBRATION_CALLS, figures, max_rate=MAX_RATE, forced=FORCED_RATE
    )


# The paths the load tests measure: the KCC's calls through Kamailio and both nodes to one
# `bereik serve` (6-second calls), and the rolling upgrade's (20-second calls, two
# `bereik serve` behind HAProxy).
KCC_PATH = "KCC through Kamailio and two nodes, one bereik serve, 6 s calls"
ROLLING_PATH = "KCC through Kamailio and two nodes, two bereik serve behind HAProxy, 20 s calls"


async def serving_with_kcc_phone(
    ex: Cluster, figures: Figures, calibrations: Calibrations
) -> float:
    """`bereik serve` connected to both nodes, the KCC phone answering; the rate to use."""
    ex.start_serve()
    ex.phone("2001", ring_ms=100)
    await both_connected(ex)
    measured = await calibration(ex, calibrations, KCC_PATH, figures, LOAD_HOLD_MS)
    if measured.calls_placed:
        # The calibration's calls counted before the test reads its starting figures.
        await until(
            lambda: (
                (o := outcomes_of(ex, CALIBRATION_CALLER))
                and "" not in o
                and sum(o.values()) == measured.calls_placed
            )
        )
    return measured.rate


# How long the load's calls last; the calibration's calls last as long (media costs CPU
# for as long as a call lasts: 1.5-second calls promised a rate 6-second ones cannot hold).
LOAD_HOLD_MS = 6000


async def calls(
    ex: Cluster,
    count: int,
    rate: float,
    caller: str,
    hold_ms: int = LOAD_HOLD_MS,
    timeout_s: int = 120,
) -> SippResult:
    return await ex.call(
        "14070",
        caller=caller,
        calls=count,
        rate=rate,
        limit=count,
        hold_ms=hold_ms,
        key_delay_ms=100,
        timeout_s=timeout_s,
    )


@pytest.mark.solo  # measures the machine's capacity and runs at half of it
async def test_calls_spread_over_both_nodes_and_the_wall_screen_counts_each_once(
    two_nodes: Cluster, figures: Figures, calibrations: Calibrations
) -> None:
    ex = two_nodes
    figures.title = "15.1 calls spread over two nodes behind Kamailio"
    rate = await serving_with_kcc_phone(ex, figures, calibrations)
    before = metric(ex, "bereik_calls_offered_total", entry="14070")
    answered_before = metric(ex, "bereik_calls_answered_total", team="kcc")
    total = int(rate * 20)
    result = await calls(ex, total, rate, caller="0655100000")
    counts = result.counts()
    assert result.returncode == 0, result.stderr[-2000:]
    assert counts["SuccessfulCall(C)"] == total and counts["FailedCall(C)"] == 0

    spread = await until(
        lambda: (c := per_node(ex, "caller = '0655100000'")) and sum(c.values()) == total and c
    )
    await until(lambda: metric(ex, "bereik_calls_offered_total", entry="14070") - before == total)
    figures["calls"] = total
    figures["per node"] = spread
    assert set(spread) == {"a", "b"}
    # Round-robin: each node gets half, give or take the probe's and the calibration's turns.
    assert abs(spread["a"] - spread["b"]) <= max(2, total // 10), spread
    # The wall screen's figures: every call offered and answered once, whichever node.
    await until(
        lambda: metric(ex, "bereik_calls_answered_total", team="kcc") - answered_before == total
    )
    outcomes = await until(lambda: (o := outcomes_of(ex, "0655100000")) and "" not in o and o)
    assert outcomes == {"answered_kcc": total}
    assert ex.ivr_fallbacks() == []


def open_dialogs(ex: Cluster, node: str) -> int:
    """Dialogs Kamailio still holds towards `node` (its SIP port in the callee's address)."""
    port = next(n.sip_port for n in ex.config.nodes if n.name == node)
    listed = rpc(ex.config, "dlg.list") or []
    return sum(f":{port}" in json.dumps(dialog) for dialog in listed)


@pytest.mark.solo  # measures the machine's capacity and runs at half of it
async def test_kill_9_of_a_node_sends_new_calls_to_the_other_and_its_calls_are_interrupted(
    two_nodes: Cluster, figures: Figures, calibrations: Calibrations
) -> None:
    ex = two_nodes
    figures.title = "15.2 kill -9 of one of two nodes under calls"
    rate = await serving_with_kcc_phone(ex, figures, calibrations)

    # Calls in progress on both nodes when A dies: four that last a minute, two on each.
    long_calls = asyncio.create_task(
        calls(ex, 4, 4, caller="0655200001", hold_ms=60_000, timeout_s=120)
    )
    await until(lambda: outcomes_of(ex, "0655200001").get("") == 4, timeout=30)
    await until(lambda: metric(ex, "bereik_calls_answered_total", team="kcc") > 0)
    # New calls before, during and after the kill.
    seconds = 30
    total = int(rate * seconds)
    load = asyncio.create_task(calls(ex, total, rate, caller="0655200002", timeout_s=180))
    await asyncio.sleep(seconds / 3)
    killed_at = time.time()
    in_progress_on_a = per_node(ex, "outcome = '' AND caller LIKE '06552%'").get("a", 0)
    new_on_a = per_node(ex, "outcome = '' AND caller = '0655200002'").get("a", 0)
    assert open_dialogs(ex, "a") > 0  # Kamailio holds A's calls as dialogs
    ex.kill_node("a")
    result = await load
    counts = result.counts()

    window = f"started_at >= '{utc(killed_at)}' AND caller = '0655200002'"
    after = per_node(ex, f"started_at >= '{utc(killed_at + 5)}' AND caller = '0655200002'")
    in_window = sum(per_node(ex, window).values())
    failed = counts.get("FailedCall(C)", 0)
    # sipp counts a load call cut on A (in progress at the kill) as failed; the rest are
    # new calls that failed.
    failed_new = max(0, failed - new_on_a)
    figures["calls placed"] = total
    figures["in progress on A at the kill"] = in_progress_on_a
    figures["of them load calls"] = new_on_a
    figures["sipp failed"] = failed
    figures["new calls failed after the kill"] = failed_new
    figures["new calls on A more than 5 s after the kill"] = after.get("a", 0)
    assert after.get("a", 0) == 0, after
    assert after.get("b", 0) > 0, after
    assert failed_new <= max(1, in_window // 100), (counts, new_on_a, in_window)

    # Kamailio's dialog keepalive finds A gone and ends its calls towards the trunk.
    ended = time.time()
    await until(
        lambda: open_dialogs(ex, "a") == 0, timeout=ex.config.kamailio.keepalive_seconds + 30
    )
    figures["s from kill to A's dialogs ended by Kamailio"] = round(time.time() - killed_at, 1)
    del ended

    # A stays down: what was on it is recorded as interrupted, not left open.
    interrupted = await until(
        lambda: (
            (n := per_node(ex, "outcome = 'interrupted'").get("a", 0)) >= in_progress_on_a and n
        ),
        timeout=30,
    )
    figures["calls recorded as interrupted while A is down"] = interrupted
    assert per_node(ex, "outcome = 'interrupted'").get("b", 0) == 0
    assert per_node(ex, "outcome = '' AND caller LIKE '06552%'").get("a", 0) == 0
    # A comes back (as systemd restarts it): nothing of it is recorded again.
    rows = len(ex.rows("SELECT uniqueid FROM calls"))
    port = next(node.ami_port for node in ex.config.nodes if node.name == "a")
    connected = f"AMI connected to 127.0.0.1:{port}"
    resynced = "call tracker resynchronised"
    before = ex.serve_log.read_text()
    ex.start_node("a")
    await until(
        lambda: (
            (log := ex.serve_log.read_text()).count(connected) > before.count(connected)
            and log.count(resynced) > before.count(resynced)
        ),
        timeout=60,
    )
    # What the resync would write is written within a batch (0.1 s): a second to show it
    # writes nothing (an absence has no event to wait on).
    await asyncio.sleep(1)
    assert len(ex.rows("SELECT uniqueid FROM calls")) == rows
    assert per_node(ex, "outcome = 'interrupted'").get("a", 0) == interrupted
    long_result = await long_calls
    assert long_result.counts()["TotalCallCreated"] == 4


# The most seconds of load the upgrade may take; the load stops placing calls once the
# upgrade is done.
ROLLING_SECONDS = int(os.environ.get("BEREIK_ROLLING_SECONDS", "180"))
HOLD_MS = 20_000  # the 20-second calls


def bereik(ex: Cluster, *arguments: str) -> str:
    """The `bereik` command line on this exchange's configuration; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "bereik", *arguments, "--config", str(ex.config_path)],
        capture_output=True,
        text=True,
        timeout=120,  # the command's start alone takes 10 s on the shared machine at load 17
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def node_state(ex: Cluster, name: str) -> str:
    states = json.loads(bereik(ex, "node", "status", "--json"))
    return next(state["state"] for state in states if state["name"] == name)


@pytest.mark.solo  # measures the machine's capacity and runs at half of it
async def test_rolling_upgrade_at_peak_drops_no_call(
    installation: asterisk.Installation,
    tmp_path: Path,
    figures: Figures,
    calibrations: Calibrations,
) -> None:
    figures.title = "15.3 rolling upgrade of two nodes and two bereik serve at peak"
    with cluster(installation, tmp_path, agi_proxy=True) as ex:
        serves = [ex.add_serve(), ex.add_serve()]
        ex.start_asterisk()
        for serve in serves:
            serve.start()
        ex.start_agi_proxy(serves)
        ex.phone("2001", ring_ms=100)
        ports = [node.ami_port for node in ex.config.nodes]
        await until(
            lambda: all(
                f"AMI connected to 127.0.0.1:{p}" in s.log.read_text()
                for p in ports
                for s in serves
            ),
            timeout=30,
        )
        rate = (await calibration(ex, calibrations, ROLLING_PATH, figures, HOLD_MS)).rate
        most = int(rate * ROLLING_SECONDS)
        started = time.monotonic()
        upgrade_done = asyncio.Event()
        load = asyncio.create_task(
            ex.call(
                "14070",
                caller="0655300000",
                calls=most,
                rate=rate,
                limit=most,
                hold_ms=HOLD_MS,
                key_delay_ms=100,
                timeout_s=ROLLING_SECONDS + 240,
                stop=upgrade_done,
            )
        )
        await asyncio.sleep(HOLD_MS / 1000)  # at peak: every slot of the load in use
        steps: dict[str, float] = {}
        for name in ("a", "b"):
            step = time.monotonic()
            bereik(ex, "node", "drain", name)
            assert node_state(ex, name) == "drained"
            await until(lambda n=name: ex.node_channels(n) == 0, timeout=HOLD_MS / 1000 + 30)
            ex.nodes[name].stop()
            ex.start_node(name)
            bereik(ex, "node", "undrain", name)
            await until(lambda n=name: node_state(ex, n) == "active", timeout=120)
            steps[f"node {name} drained, restarted, back s"] = round(time.monotonic() - step, 1)
        for index, serve in enumerate(serves, 1):
            step = time.monotonic()
            assert serve.stop() == 0
            mark = serve.log.stat().st_size
            serve.start()
            # As the runbook says: the next process goes down only once HAProxy passes
            # calls to this one again (its health check needs 3 s of answers to trust it).
            await until(
                lambda s=serve, m=mark: b"ivr: s from" in s.log.read_bytes()[m:], timeout=60
            )
            steps[f"bereik serve {index} restarted s"] = round(time.monotonic() - step, 1)
        upgraded = time.monotonic() - started
        # The last process has served a call: the upgrade is done under load, and the calls
        # in progress end as they would.
        still_calling = not load.done()
        upgrade_done.set()
        result = await load
        counts = result.counts()
        total = counts["TotalCallCreated"]
        rows = await until(
            lambda: (
                (n := ex.rows("SELECT count(*) AS n FROM calls WHERE caller = '0655300000'")[0].n)
                == total
                and n
            ),
            timeout=30,
        )
        spread = per_node(ex, "caller = '0655300000'")
        figures["calls"] = total
        figures["s of load"] = round(time.monotonic() - started)
        figures["upgrade done after s"] = round(upgraded)
        for step_name, seconds in steps.items():
            figures[step_name] = seconds
        figures["per node"] = spread
        figures["dropped"] = counts.get("FailedCall(C)")
        figures["fallbacks"] = len(ex.ivr_fallbacks())
        figures["call rows"] = rows
        assert result.returncode == 0, result.stderr[-2000:]
        assert counts["SuccessfulCall(C)"] == total and counts["FailedCall(C)"] == 0
        assert ex.ivr_fallbacks() == []
        assert still_calling, "the load ended before the upgrade: raise BEREIK_ROLLING_SECONDS"
        # Placed at the rate from the first call until the upgrade was done.
        assert total >= 0.9 * rate * upgraded, (total, rate, upgraded)


async def originate_nodes(ami: AmiNodes, count: int) -> list[str]:
    """Originate `count` calls to the KCC phone as click-to-call does (one AMI Originate
    each, through the nodes' face); the node of each, from its OriginateResponse."""
    nodes = []
    for n in range(count):
        action_id = f"test-originate-{n}-{time.monotonic_ns()}"
        await ami.action(
            {
                "Action": "Originate",
                "Channel": "PJSIP/2001",
                "Application": "Wait",
                "Data": "1",
                "Async": "true",
                "ActionID": action_id,
                "Timeout": "10000",
            }
        )
        while True:
            event = await asyncio.wait_for(ami.events.get(), 15)
            if event.get("Event") == "OriginateResponse" and event.get("ActionID") == action_id:
                assert event.get("Response") == "Success", dict(event)
                nodes.append(str(event.get("Uniqueid", "")).split("-", 1)[0])
                break
    return nodes


async def test_a_drained_node_gets_no_originate_and_the_cli_audits_who_drained_it(
    two_nodes: Cluster,
) -> None:
    ex = two_nodes
    ex.phone("2001", ring_ms=100)
    store = sessions(create_engine(ex.config.database.url))
    await migrate_async(ex.config.database.url)
    services = build_services(ex.config, store, home=ex.host_instance, with_ami=True)
    ami = services.ami
    assert isinstance(ami, AmiNodes)
    ami.start()
    watcher = asyncio.create_task(nodes_service.watch(services))
    try:
        await until(lambda: sorted(ami.nodes_up()) == ["a", "b"], timeout=20)
        assert sorted(await originate_nodes(ami, 4)) == ["a", "a", "b", "b"]

        bereik(ex, "node", "drain", "a")
        await until(lambda: ami.drained == {"a"}, timeout=10)
        assert await originate_nodes(ami, 4) == ["b", "b", "b", "b"]

        bereik(ex, "node", "undrain", "a")
        await until(lambda: ami.drained == set(), timeout=10)
        assert "a" in await originate_nodes(ami, 2)
    finally:
        watcher.cancel()
        await ami.close()
    audited = ex.rows(
        "SELECT actor, action, object_id FROM audit_log WHERE object_type = 'node' ORDER BY id"
    )
    who = f"cli:{getpass.getuser()}"
    assert [tuple(row) for row in audited] == [(who, "drain", "a"), (who, "undrain", "a")]


async def test_an_agent_on_a_call_through_node_a_is_not_offered_a_call_by_node_b(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with cluster(
        installation,
        tmp_path,
        phones=queue_agents("2001"),
        kcc_agents=["2001"],
        kcc_toml=QUEUE_KCC,
        extra_toml=queue_toml(),
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        await both_connected(ex)
        ex.register("2001")  # at Kamailio: both nodes reach the phone there
        phone = ex.agent_phone("2001", ring_ms=300, talk_ms=60_000)
        await sign_in(ex, "2001")
        await until(lambda: all("PJSIP/2001" in ex.node_cli(n, "queue show kcc") for n in "ab"))

        bereik(ex, "node", "drain", "b")  # the first caller reaches the agent through A
        first = asyncio.create_task(
            ex.call("14070", caller="0655400001", hold_ms=25_000, key_delay_ms=100, timeout_s=90)
        )
        try:
            await until(
                lambda: (
                    [c.get("caller") for c in phone_calls(phone) if "answered" in c]
                    == ["0655400001"]
                ),
                timeout=30,
            )
        except AssertionError:
            raise AssertionError(f"the agent's phone saw {phone_calls(phone)}") from None
        assert per_node(ex, "caller = '0655400001'") == {"a": 1}
        bereik(ex, "node", "undrain", "b")
        bereik(ex, "node", "drain", "a")  # the second caller waits in line on B
        await until(lambda: node_state(ex, "b") == "active", timeout=120)
        second = asyncio.create_task(
            ex.call("14070", caller="0655400002", hold_ms=60_000, key_delay_ms=100, timeout_s=120)
        )
        # B has the caller, waiting in its line (app_queue lists a waiting caller's wait).
        await until(
            lambda: (
                per_node(ex, "caller = '0655400002'") == {"b": 1}
                and "wait:" in ex.node_cli("b", "queue show kcc")
            ),
            timeout=30,
        )

        assert (await first).returncode == 0
        # B offers its caller to the agent only once the call through A is over.
        first_call, second_call = await until(
            lambda: len(c := phone_calls(phone)) == 2 and c, timeout=30
        )
        assert (first_call["caller"], second_call["caller"]) == ("0655400001", "0655400002")
        assert "ended" in first_call
        assert float(second_call["rung"]) >= float(first_call["ended"]), (first_call, second_call)
        assert per_node(ex, "caller = '0655400002'") == {"b": 1}
        assert (await second).returncode == 0


def all_active(ex: Cluster) -> bool:
    """Kamailio's dispatcher probes every node and finds it up."""
    return all(state.state == "active" for state in nodes_service.status(ex.config))


async def test_an_admin_drains_and_undrains_a_node_on_the_admin_screen(
    two_nodes: Cluster, figures: Figures
) -> None:
    ex = two_nodes
    figures.title = "15 drain and undrain on the admin screen"
    ex.start_serve()
    ex.phone("2001", ring_ms=100)
    await both_connected(ex)
    await add_users(ex, [("ad", "admin", "", ""), ("anna", "agent", "", "2001")])
    await until(lambda: all_active(ex), timeout=30)  # the first OPTIONS probes answered

    async with chromium() as browser:
        admin = await browser_sign_in(browser, ex, "ad")
        await admin.goto(ex.url("/admin/nodes"))
        await admin.wait_for_selector("tr[data-node='a'][data-state='active']")
        assert await admin.inner_text("tr[data-node='a'] .node-state") == "Actief"
        results = {"nodes": await axe(admin)}

        await admin.click("tr[data-node='a'] .drain-btn")
        await admin.wait_for_selector("tr[data-node='a'][data-state='drained']")
        assert await admin.inner_text("tr[data-node='a'] .node-state") == "Uit roulatie"
        assert await admin.inner_text("tr[data-node='b'] .node-state") == "Actief"
        results["nodes, a drained"] = await axe(admin)
        assert node_state(ex, "a") == "drained"  # `bereik node status` sees it too

        drained = await calls(ex, 4, 2, caller="0655700001", hold_ms=1500)
        assert drained.returncode == 0, drained.stderr[-2000:]
        while_drained = await until(lambda: per_node(ex, "caller = '0655700001'"))
        figures["calls while a drained, per node"] = while_drained
        assert while_drained == {"b": 4}

        await admin.click("tr[data-node='a'] .undrain-btn")
        clicked = time.monotonic()
        await admin.wait_for_selector("tr[data-node='a'] .drain-btn")
        await until(lambda: all_active(ex), timeout=30)  # A is probed back into service
        figures["s from undrain to a active"] = round(time.monotonic() - clicked, 1)
        await admin.reload()
        assert await admin.inner_text("tr[data-node='a'] .node-state") == "Actief"
        await admin.click("button[name=lang][value=en]")
        await admin.wait_for_selector("h1:has-text('Asterisk nodes')")
        assert await admin.inner_text("tr[data-node='a'] .node-state") == "Active"
        results["nodes, English"] = await axe(admin)

        back = await calls(ex, 4, 2, caller="0655700002", hold_ms=1500)
        assert back.returncode == 0, back.stderr[-2000:]
        spread = await until(
            lambda: (c := per_node(ex, "caller = '0655700002'")) and sum(c.values()) == 4 and c
        )
        figures["calls after undrain, per node"] = spread
        assert spread.get("a", 0) >= 1, spread

        # Not an admin: the page and both ways of draining are refused, nothing changes.
        agent = await browser_sign_in(browser, ex, "anna")
        refused = await agent.goto(ex.url("/admin/nodes"))
        assert refused is not None and refused.status == 403
        statuses = await agent.evaluate(
            """async () => {
                const token = document.querySelector("meta[name=csrf-token]").content;
                const post = (url) => fetch(url, {method: "POST",
                    headers: {"X-CSRF-Token": token}}).then((r) => r.status);
                return [await post("/admin/nodes/a/drain"), await post("/api/nodes/a/drain")];
            }"""
        )
        assert statuses == [403, 403]
        assert node_state(ex, "a") == "active"

    found = {state: serious(result) for state, result in results.items() if serious(result)}
    figures["axe-core rules passed (nl, drained, en)"] = [r["passes"] for r in results.values()]
    figures["serious or critical violations"] = len(found)
    assert not found, json.dumps(found, indent=2)
    audited = ex.rows(
        "SELECT actor, action, object_id FROM audit_log WHERE object_type = 'node' ORDER BY id"
    )
    assert [tuple(row) for row in audited] == [("ad", "drain", "a"), ("ad", "undrain", "a")]


def processes_naming(*names: str) -> list[str]:
    """The command lines of running processes that name one of `names` (a node's or
    Kamailio's directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if any(name in line for name in names):
            found.append(line)
    return found


def start_up(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """`bereik up --nodes 2` on the configuration, in its own process group (as a
    terminal gives it), its output to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bereik", "up", "--nodes", "2", "--config", str(config_path)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )


def remove(installation: asterisk.Installation, dirs: list[str], nodes_file: Path) -> None:
    """What the demo left: the nodes' and Kamailio's directories, its configuration."""
    for path in dirs:
        shutil.rmtree(installation.host_path(path), ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
    nodes_file.unlink(missing_ok=True)


def answers(ex: Exchange, path: str) -> bool:
    try:
        return bool(ex.http_get(path))
    except OSError:  # not listening yet
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_bereik_up_with_two_nodes_answers_a_call_in_the_ivr_and_stops_cleanly(
    installation: asterisk.Installation,
    tmp_path: Path,
    stop_signal: signal.Signals,
    figures: Figures,
) -> None:
    figures.title = f"15 `bereik up --nodes 2`, stopped by {stop_signal.name}"
    with exchange(installation, tmp_path) as ex:
        parts = [f"{ex.instance_dir}-{part}" for part in ("a", "b", "kamailio")]
        nodes_file = Path(f"{ex.instance_dir}-2-nodes.toml")
        log = tmp_path / "up.log"
        started = time.monotonic()
        up = start_up(ex.config_path, log)
        try:
            await until(
                lambda: up.poll() is not None or b"behind Kamailio" in log.read_bytes(), timeout=180
            )
            assert up.poll() is None, log.read_text(errors="replace")[-4000:]
            config = load(nodes_file)
            assert [node.name for node in config.nodes] == ["a", "b"]
            await until(lambda: answers(ex, "/healthz"), timeout=90)
            await until(
                lambda: all(s.state == "active" for s in nodes_service.status(config)), timeout=30
            )

            figures["s from start to both nodes active"] = round(time.monotonic() - started, 1)
            result = await ex.call("14070", caller="0655800001", hold_ms=3000)
            assert result.returncode == 0, result.stderr[-2000:]
            assert result.counts()["SuccessfulCall(C)"] == 1
            # The IVR of the demo's own bereik serve answered it, on one of the two nodes.
            assert 'bereik_agi_requests_total{handler="ivr"} 1.0' in ex.http_get("/metrics")
            node = await until(lambda: per_node(ex, "caller = '0655800001'"))
            figures["call answered by the IVR on node"] = node
            assert set(node) <= {"a", "b"} and sum(node.values()) == 1, node

            if stop_signal == signal.SIGINT:
                os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
            else:
                up.send_signal(signal.SIGTERM)  # `kill`, or a service manager
            stopping = time.monotonic()
            assert up.wait(60) == 0, log.read_text(errors="replace")[-4000:]
            figures["s to stop"] = round(time.monotonic() - stopping, 1)
            assert "stopped Kamailio, the nodes and bereik serve" in log.read_text()
            left = processes_naming(*parts)
            figures["processes left"] = len(left)
            assert left == [], left
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
            remove(installation, parts, nodes_file)
