"""The citizen's own voice, end to end (real Asterisk, sipp, SMTP, Chromium): the question
recorded into the hopper, its purge, the post-call survey, and what announcements save."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from bench.exchange import Exchange, Phone, exchange, free_port, speech_pcap, until
from cti.retention import purge
from cti.services import open_services
from cti.store.models import Hopper
from dialplan import asterisk
from tests.e2e.mail import Smtp
from tests.e2e.test_access import token_for
from tests.e2e.web_support import add_users, chromium, sign_in

CITIZEN = "0612345678"
SPOKEN_SECONDS = 5.0
TEAMS = """
[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
members = []
mailbox = "parkeren@gemeente.example"

[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7001"
members = ["3001"]
ring_seconds = 5
mailbox = "vergunningen@gemeente.example"
"""
SETTINGS = """
[question_recording]
prompt = "Spreek na de toon uw vraag in."
"""


@pytest.fixture
def voice(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(
        installation,
        tmp_path,
        phones=phones,
        teams_toml=TEAMS,
        extra_toml=SETTINGS,
        server_toml='public_url = "https://bereik.gemeente.example"',
    ) as ex:
        ex.start_asterisk()
        ex.start_serve()
        yield ex


def soxi_seconds(path: str) -> float:
    done = subprocess.run(["soxi", "-D", path], capture_output=True, text=True, check=True)
    return float(done.stdout)


async def record_a_question(ex: Exchange) -> tuple[int, str]:
    """A caller to Parkeren (nobody there) confirms the callback with 1 and speaks 5 s,
    then presses #; returns the hopper id and the recording's file."""
    speech = speech_pcap(ex.workdir / "question.pcap", SPOKEN_SECONDS)
    result = await ex.call(
        "7003",
        caller=CITIZEN,
        keys="1,S#",
        key_delay_ms=3000,
        hold_ms=30_000,
        timeout_s=60,
        speech=(speech, SPOKEN_SECONDS),
    )
    assert result.returncode == 0, result.stderr
    rows = await until(
        lambda: ex.rows(
            "SELECT r.id, r.path, r.hopper_id FROM question_recordings r "
            "JOIN hoppers h ON h.id = r.hopper_id WHERE h.team_id = 'parkeren'"
        )
    )
    assert len(rows) == 1
    return rows[0].hopper_id, rows[0].path


async def test_a_spoken_question_belongs_to_the_hopper_and_only_its_team_hears_it(
    voice: Exchange,
) -> None:
    smtp = Smtp(voice.ports.smtp)
    mailbox = smtp.start()
    try:
        await add_users(
            voice,
            [("carla", "member", "parkeren", "3001"), ("bram", "member", "vergunningen", "")],
        )
        hopper_id, path = await record_a_question(voice)
        recorded = soxi_seconds(path)
        print(f"spoke {SPOKEN_SECONDS} s, recorded {recorded:.2f} s")
        assert abs(recorded - SPOKEN_SECONDS) < 1.0
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

        carla, bram = await token_for(voice, "carla"), await token_for(voice, "bram")
        async with aiohttp.ClientSession() as http:
            as_carla = {"Authorization": f"Bearer {carla}"}
            detail = await (
                await http.get(voice.url(f"/api/hoppers/{hopper_id}"), headers=as_carla)
            ).json()
            url = detail["recordings"][0]["url"]
            played = await http.get(voice.url(url), headers=as_carla)
            assert played.status == 200 and played.content_type == "audio/wav"
            assert await played.read() == Path(path).read_bytes()  # noqa: ASYNC240
            refused = await http.get(voice.url(url), headers={"Authorization": f"Bearer {bram}"})
            assert refused.status == 403

        async with chromium() as browser:
            page = await sign_in(browser, voice, "carla")
            await page.goto(voice.url("/team"))
            audio = page.locator(f'tr[data-hopper="{hopper_id}"] audio.question')
            assert await audio.get_attribute("src") == url
            await audio.evaluate("a => a.play()")
            await page.wait_for_function(
                "document.querySelector('audio.question').currentTime > 0.5"
            )

        plays = voice.rows(
            "SELECT actor FROM audit_log WHERE action = 'play' AND object_type = 'recording'"
        )
        assert [row.actor for row in plays] == ["carla", "carla"]  # the API, then the inbox

        mails = await mailbox.wait(1)
        mail = next(m for m in mails if m["To"] == "parkeren@gemeente.example")
        assert not mail.is_multipart()
        body = mail.get_payload(decode=True).decode()
        assert f"https://bereik.gemeente.example/team/hoppers/{hopper_id}" in body
        assert "ingesproken" in body
    finally:
        smtp.stop()


async def test_the_retention_purge_of_a_closed_hopper_removes_its_recording(
    voice: Exchange,
) -> None:
    hopper_id, path = await record_a_question(voice)
    assert Path(path).exists()  # noqa: ASYNC240
    # Closed long ago, past closed_hopper_days (90); the purge as the retention job runs it.
    async with open_services(voice.config) as services:
        async with services.sessions() as session:
            await session.execute(
                update(Hopper)
                .where(Hopper.id == hopper_id)
                .values(
                    status="closed",
                    closing_reason="reached",
                    closed_at=datetime.now(UTC) - timedelta(days=91),
                )
            )
            await session.commit()
        purged = await purge(services)
    assert purged.hoppers == 1 and purged.recordings == 1
    assert not Path(path).exists()  # noqa: ASYNC240
    assert voice.rows("SELECT id FROM question_recordings") == []
