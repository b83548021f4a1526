"""Quality recording and coaching with two Asterisk nodes behind Kamailio, through the KCC's
waiting line (kcc.mode = "queue"): a consenting caller's call carried by node B is recorded by
B into the one shared recordings folder; the agent stops it through the API (sent to B, which
then lists no MixMonitor on the caller's channel, and the file holds less than the talk); a
supervisor listens in on the same call (the Originate of her phone goes to B, never to A, and
B's ChanSpy joins the agent's channel; audited); the KCC's lead plays the recording; `bereik
privacy erase` removes the file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster import Cluster, cluster
from bench.exchange import EventRecorder, Phone, free_port, speech_pcap, until
from cti.ami.client import AmiClient
from cti.nodes.service import DRAINED, SET, UNDRAINED
from dialplan import asterisk
from dialplan.kamailio import rpc
from dialplan.render import load_secrets
from tests.support.quality import SETTINGS, erase, soxi_seconds, until_async
from tests.support.users import add_users, token_for
from tests.support.waiting_line import (
    PATIENT_SERVER,
    QUEUE_KCC,
    phone_calls,
    queue_toml,
    sign_in,
)
from tests.support.waiting_line import agents as queue_agents

CALLER = "0612340004"
# The caller speaks from key 0 on (2.2 s into the call) for SPOKEN_SECONDS, then holds; the
# agent answers after the menu, the question and the ringing (4.5 s or more) and hangs up
# TALK_MS later, while the caller holds (a BYE during sipp's speech would be an error). The
# speech must outlast the answer by the 2 s Asterisk buffers before the file first grows,
# also when a busy machine answers late.
SPOKEN_SECONDS = 10.0
TALK_MS = 9000


@contextlib.asynccontextmanager
async def node_events(ex: Cluster, node: str) -> AsyncIterator[EventRecorder]:
    """Every AMI event of one node from now on, from its own AMI port: what ran where."""
    secret = load_secrets(ex.host_instance / "secrets.json", ex.config).ami
    port = next(n.ami_port for n in ex.config.nodes if n.name == node)
    client = AmiClient("127.0.0.1", port, ex.config.asterisk.ami_user, secret)
    client.start()
    recorder = EventRecorder(client)
    try:
        await client.wait_connected(10)
        recorder.start()
        yield recorder
    finally:
        recorder.stop()
        await client.close()


def channel_of(ex: Cluster, node: str, uniqueid: str) -> str:
    """The node's channel with this Uniqueid, from its own `core show channels concise`."""
    for line in ex.node_cli(node, "core show channels concise").splitlines():
        fields = line.split("!")
        if len(fields) > 13 and fields[13] == uniqueid:
            return fields[0]
    return ""


async def test_on_two_nodes_a_call_carried_by_b_is_recorded_and_coached_on_b_played_and_erased(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    # Sofie, a supervisor, listens in from 2050, a phone that registers at Kamailio as the
    # agent's does.
    supervisor = Phone("2050", free_port(), "Sofie", registers=True)
    with cluster(
        installation,
        tmp_path,
        phones=[*queue_agents("2001"), supervisor],
        kcc_agents=["2001"],
        kcc_toml=QUEUE_KCC + "\nquality_share = 1.0",
        extra_toml=queue_toml() + SETTINGS,
        server_toml=PATIENT_SERVER,
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        await until(lambda: "IVR prompts ready" in ex.serve_log.read_text(), timeout=60)
        ex.register("2001")  # at Kamailio: both nodes reach the phone there
        phone_log = ex.agent_phone("2001", ring_ms=300, talk_ms=TALK_MS)
        ex.register(supervisor.extension)
        ex.phone(supervisor.extension, ring_ms=100)
        await sign_in(ex, "2001")
        await until(lambda: all("PJSIP/2001" in ex.node_cli(n, "queue show kcc") for n in "ab"))
        # A takes no new calls: the caller's call is carried by B.
        await asyncio.to_thread(rpc, ex.config, "dispatcher.set_duid_state", DRAINED, SET, "a")
        await add_users(
            ex,
            [
                ("anna", "agent", "kcc", "2001"),
                ("lea", "lead", "kcc", ""),
                ("sofie", "supervisor", "", supervisor.extension),
            ],
        )
        anna = {"Authorization": f"Bearer {await token_for(ex, 'anna')}"}
        lea = {"Authorization": f"Bearer {await token_for(ex, 'lea')}"}
        sofie = {"Authorization": f"Bearer {await token_for(ex, 'sofie')}"}

        speech = speech_pcap(ex.workdir / "talk.pcap", SPOKEN_SECONDS)
        call = asyncio.create_task(
            ex.call(
                "14070",
                caller=CALLER,
                keys="0S",
                key_delay_ms=1000,
                hold_ms=30_000,
                timeout_s=60,
                speech=(speech, SPOKEN_SECONDS),
            )
        )
        async with (
            aiohttp.ClientSession() as http,
            node_events(ex, "a") as on_a,
            node_events(ex, "b") as on_b,
        ):

            async def answered_at_anna() -> bool:
                got = await (await http.get(ex.url("/api/agent/call"), headers=anna)).json()
                found = got["call"]
                return bool(found and found["state"] == "answered" and found["caller"] == CALLER)

            await until_async(answered_at_anna)
            [recording] = ex.rows(
                "SELECT id, call_uniqueid, path, team_id FROM question_recordings "
                "WHERE kind = 'quality'"
            )
            assert recording.call_uniqueid.startswith("b-") and recording.team_id == "kcc"
            # B records into the one shared folder, not its own node directory.
            assert Path(recording.path).parent == ex.host_instance / "recordings"
            # Sofie listens in on the call while the two talk (her phone rings as the
            # recording starts to grow; its spy is looked at after the stop). By then B is
            # drained and A back in service, as `bereik serve` knows: a new call would go to
            # A, so only the call itself leads the Originate of her phone to B.
            await asyncio.to_thread(rpc, ex.config, "dispatcher.set_duid_state", DRAINED, SET, "b")
            await asyncio.to_thread(
                rpc, ex.config, "dispatcher.set_duid_state", UNDRAINED, SET, "a"
            )
            await until(lambda: "drained nodes now: b\n" in ex.serve_log.read_text(), timeout=5)
            coach = await http.post(
                ex.url(f"/api/calls/{recording.call_uniqueid}/coach"),
                headers=sofie,
                json={"mode": "listen"},
            )
            assert coach.status == 200, await coach.text()
            spyer = f"coach-{(await coach.json())['session']}"
            channel = channel_of(ex, "b", recording.call_uniqueid)
            assert channel, "node B does not carry the caller's channel"
            # Asterisk on B records the caller's channel into the shared folder as it names
            # it (MixMonitor lists the file without its extension).
            written = f"{ex.config.asterisk.instance_dir}/recordings/{Path(recording.path).stem}"
            assert f"\t{written}\t" in ex.node_cli("b", f"mixmonitor list {channel}")

            # The file grows while the two talk (past its 44-byte header and 0.1 s of audio;
            # Asterisk writes it in blocks of about 2 s).
            file = Path(recording.path)
            await until(lambda: file.stat().st_size > 44 + 1600, timeout=10)

            stop = await http.post(ex.url("/api/agent/recording/stop"), headers=anna, json={})
            assert stop.status == 200 and (await stop.json())["stopped"] is True
            # StopMixMonitor closes the file before it answers: this is its final size.
            size_at_stop = file.stat().st_size  # noqa: ASYNC240
            # Asterisk on B: no MixMonitor left on the caller's channel, which is still up.
            assert written not in ex.node_cli("b", f"mixmonitor list {channel}")
            assert channel_of(ex, "b", recording.call_uniqueid) == channel

            # Node B rang Sofie's phone (the Uniqueid the Originate gave it) and its ChanSpy
            # joined Anna's channel there, in listen mode.
            spy = await on_b.wait_for("ChanSpyStart", timeout=10, SpyerUniqueid=spyer)
            agent_channel = spy["SpyeeChannel"]
            assert agent_channel.startswith("PJSIP/2001-"), spy
            assert spy["SpyerChannel"].startswith(f"PJSIP/{supervisor.extension}-"), spy
            assert spy["SpyerExten"] == "listen"
            assert agent_channel in ex.node_cli("b", "core show channels concise")

            result = await call
            assert result.returncode == 0, result.stderr[-500:]
            # From the agent's phone: its 200 OK until its BYE (the agent hangs up).
            [at_phone] = phone_calls(phone_log)
            assert at_phone["caller"] == CALLER
            talked = float(at_phone["ended"]) - float(at_phone["answered"])
            # It stopped growing at the stop, though the two talked on.
            assert file.stat().st_size == size_at_stop  # noqa: ASYNC240
            cut = soxi_seconds(recording.path)
            print(f"talked {talked:.2f} s, recorded {cut:.2f} s until stopped (node B)")
            assert 0 < cut < talked - 2

            listed_api = await (
                await http.get(ex.url("/api/quality-recordings"), headers=lea)
            ).json()
            assert [item["id"] for item in listed_api["recordings"]] == [recording.id]
            played = await http.get(ex.url(listed_api["recordings"][0]["url"]), headers=lea)
            assert played.status == 200 and played.content_type == "audio/wav"
            assert await played.read() == Path(recording.path).read_bytes()  # noqa: ASYNC240

            # The spy ended with Anna's call, on B. Node A had no channel of Sofie's: none of
            # its events, up to one it sends now (so its recorder was listening), names the
            # Uniqueid that only the Originate gave.
            await on_b.wait_for("ChanSpyStop", timeout=10, SpyerUniqueid=spyer)
            await on_a.client.action({"Action": "UserEvent", "UserEvent": "BereikProbe"})
            await on_a.wait_for("UserEvent", timeout=5, UserEvent="BereikProbe")
            assert [e for e in on_a.events if spyer in e.values()] == []

        # On record: Sofie's request, the spy's start on Anna's channel and its end.
        def session_rows() -> list[Any] | None:
            rows = ex.rows(
                "SELECT actor, action, detail FROM audit_log WHERE object_type = 'coaching' "
                "AND object_id = :s ORDER BY id",
                s=spyer.removeprefix("coach-"),
            )
            return rows if len(rows) >= 3 else None

        coached = await until(session_rows)
        assert [(row.actor, row.action) for row in coached] == [
            ("sofie", "coach"),
            ("sofie", "coach_start"),
            ("sofie", "coach_end"),
        ]
        assert coached[1].detail.endswith(f"on {agent_channel}")

        counts = erase(ex.config_path, CALLER)
        print(counts)
        assert counts["quality_recordings"] == 1 and counts["files"] == 1
        assert not Path(recording.path).exists()  # noqa: ASYNC240
        assert ex.rows("SELECT id FROM calls WHERE caller = :n", n=CALLER) == []
