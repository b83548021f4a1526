"""Quality recording with consent, end to end (real Asterisk, sipp): a caller who refuses with
the key is not recorded, one who does not is, for as long as they talked; the team's lead
hears it, a member of another team does not; the member on the call stops one; `bereik
privacy erase` removes a recording with every other trace of the number and says so."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import aiohttp

from bench.exchange import Phone, exchange, free_port, speech_pcap, until
from dialplan import asterisk
from tests.support import sipplog
from tests.support.quality import SETTINGS, erase, soxi_seconds, until_async
from tests.support.users import add_users, token_for

REFUSES = "0612340001"
ACCEPTS = "0612340002"
STOPPED = "0612340003"
SPOKEN_SECONDS = 9.0
TEAMS = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
quality_share = 1.0

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
members = []
mailbox = "parkeren@gemeente.example"
"""


def metric(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def talk_seconds(log: Path, caller: str) -> float | None:
    """From the member's phone: its 200 OK to the caller's INVITE until the caller's BYE;
    None until the phone has logged that BYE (it reaches the phone over its own leg, a
    moment after the caller's sipp has ended)."""
    messages = [m for m in sipplog.read(log) if m.user("from") == caller or m.user("to") == caller]
    answered = next(
        m.at for m in messages if m.sent and m.status == 200 and m.cseq_method == "INVITE"
    )
    ended = next((m.at for m in messages if not m.sent and m.method == "BYE"), None)
    return None if ended is None else ended - answered


async def test_a_refusing_caller_is_not_recorded_an_accepting_one_is_heard_by_the_lead_and_erased(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(
        installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=SETTINGS
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        await until(lambda: "IVR prompts ready" in ex.serve_log.read_text(), timeout=60)
        # Carla answers after 0.3 s and talks until the caller hangs up.
        phone_log = ex.agent_phone("3001", ring_ms=300, talk_ms=60_000)
        # 9 while the question is asked: refused; then put through, and 3 s of talk.
        refused = await ex.call(
            "7001", caller=REFUSES, keys="9", key_delay_ms=1000, hold_ms=5000, timeout_s=40
        )
        assert refused.returncode == 0, refused.stderr
        # No key: recorded. The caller speaks from the start (sipp sends audio only while it
        # plays), through the question, the ringing and the talk, and hangs up at its end.
        speech = speech_pcap(ex.workdir / "talk.pcap", SPOKEN_SECONDS)
        accepted = await ex.call(
            "7001",
            caller=ACCEPTS,
            keys="S",
            key_delay_ms=200,
            hold_ms=100,
            timeout_s=40,
            speech=(speech, SPOKEN_SECONDS),
        )
        assert accepted.returncode == 0, accepted.stderr

        answered = await until(
            lambda: (
                rows
                if len(
                    rows := ex.rows(
                        "SELECT caller, uniqueid FROM calls WHERE outcome = 'answered_team' "
                        "ORDER BY caller"
                    )
                )
                == 2
                else None
            )
        )
        assert [row.caller for row in answered] == [REFUSES, ACCEPTS]
        recordings = ex.rows(
            "SELECT id, call_uniqueid, path, team_id FROM question_recordings "
            "WHERE kind = 'quality'"
        )
        assert [(r.call_uniqueid, r.team_id) for r in recordings] == [
            (answered[1].uniqueid, "vergunningen")
        ]
        recording = recordings[0]
        files = sorted(Path(recording.path).parent.glob("quality-*"))
        assert files == [Path(recording.path)]  # none for the caller who refused
        talked = await until(lambda: talk_seconds(phone_log, ACCEPTS))
        recorded = await until(lambda: soxi_seconds(recording.path))
        print(f"talked {talked:.2f} s, recorded {recorded:.2f} s")
        assert abs(recorded - talked) < 1.0
        assert stat.S_IMODE(os.stat(recording.path).st_mode) == 0o600
        scraped = ex.http_get("/metrics")
        team = 'bereik_quality_recordings_total{result="%s",team="vergunningen"}'
        assert metric(scraped, team % "refused") == 1.0
        assert metric(scraped, team % "recorded") == 1.0

        await add_users(
            ex, [("lea", "lead", "vergunningen", ""), ("piet", "member", "parkeren", "")]
        )
        lea, piet = await token_for(ex, "lea"), await token_for(ex, "piet")
        async with aiohttp.ClientSession() as http:
            as_lea = {"Authorization": f"Bearer {lea}"}
            listed = await (
                await http.get(ex.url("/api/quality-recordings"), headers=as_lea)
            ).json()
            assert [item["id"] for item in listed["recordings"]] == [recording.id]
            url = listed["recordings"][0]["url"]
            played = await http.get(ex.url(url), headers=as_lea)
            assert played.status == 200 and played.content_type == "audio/wav"
            assert await played.read() == Path(recording.path).read_bytes()  # noqa: ASYNC240
            screen = await http.get(ex.url("/quality"), headers=as_lea)
            assert screen.status == 200
            assert f'data-recording="{recording.id}"' in await screen.text()
            as_piet = {"Authorization": f"Bearer {piet}"}
            assert (await http.get(ex.url("/quality"), headers=as_piet)).status == 403
            assert (await http.get(ex.url(url), headers=as_piet)).status == 403
            assert (
                await http.get(ex.url("/api/quality-recordings"), headers=as_piet)
            ).status == 403
        audited = ex.rows(
            "SELECT actor, action FROM audit_log WHERE object_type = 'recording' ORDER BY id"
        )
        assert [(row.actor, row.action) for row in audited] == [("lea", "play"), ("piet", "refuse")]

        # The third caller is recorded too, until Carla presses stop once she has answered.
        await add_users(ex, [("carla", "member", "vergunningen", "3001")])
        carla = {"Authorization": f"Bearer {await token_for(ex, 'carla')}"}
        stopped_call = asyncio.create_task(
            ex.call(
                "7001",
                caller=STOPPED,
                keys="S",
                key_delay_ms=200,
                hold_ms=100,
                timeout_s=40,
                speech=(speech, SPOKEN_SECONDS),
            )
        )
        async with aiohttp.ClientSession() as http:

            async def answered_at_carla() -> bool:
                got = await (await http.get(ex.url("/api/agent/call"), headers=carla)).json()
                call = got["call"]
                return bool(call and call["state"] == "answered" and call["caller"] == STOPPED)

            await until_async(answered_at_carla)
            stop = await http.post(ex.url("/api/agent/recording/stop"), headers=carla, json={})
            assert stop.status == 200 and (await stop.json())["stopped"] is True
        assert (await stopped_call).returncode == 0
        path = await until(
            lambda: ex.rows(
                "SELECT r.path FROM question_recordings r JOIN calls c "
                "ON c.uniqueid = r.call_uniqueid WHERE c.caller = :n",
                n=STOPPED,
            )
        )
        cut = soxi_seconds(path[0].path)
        talked_stopped = await until(lambda: talk_seconds(phone_log, STOPPED))
        print(f"talked {talked_stopped:.2f} s, recorded {cut:.2f} s until stopped")
        assert cut < talked_stopped - 2
        stops = ex.rows("SELECT actor FROM audit_log WHERE action = 'stop'")
        assert [row.actor for row in stops] == ["carla"]

        counts = erase(ex.config_path, ACCEPTS)
        print(counts)
        assert counts["calls"] == 1
        assert counts["quality_recordings"] == 1 and counts["files"] == 1
        assert not Path(recording.path).exists()  # noqa: ASYNC240
        for table, column in (
            ("calls", "caller"),
            ("hoppers", "caller"),
            ("queue_calls", "caller"),
            ("virtual_holds", "number"),
        ):
            assert ex.rows(f"SELECT id FROM {table} WHERE {column} = :n", n=ACCEPTS) == []
        for table in ("question_recordings", "survey_answers", "announcement_hearings"):
            left = ex.rows(
                f"SELECT id FROM {table} WHERE call_uniqueid = :u", u=answered[1].uniqueid
            )
            assert left == [], table
        # The refusing caller's call is someone else's data: it stays.
        assert [r.caller for r in ex.rows("SELECT caller FROM calls ORDER BY caller")] == [
            REFUSES,
            STOPPED,
        ]
        erased = ex.rows("SELECT actor, object_id FROM audit_log WHERE action = 'erase'")
        assert [(row.actor, row.object_id) for row in erased] == [("fg", "06******02")]
