"""The citizen's own voice, end to end (real Asterisk, sipp, SMTP, Chromium): the question
recorded into the hopper, its purge, the post-call survey, and what announcements save."""

from __future__ import annotations

import asyncio
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
from tests.support.backends import on_both_backends
from tests.support.browser import chromium, until_in_page
from tests.support.browser import sign_in as sign_in_browser
from tests.support.ivr import announce, closed_today
from tests.support.mail import Smtp
from tests.support.users import add_users, token_for
from tests.support.waiting_line import feature_code, kcc_line, sign_in

CITIZEN = "0612345678"
SPOKEN_SECONDS = 5.0
# The KCC line: 0 in the menu at 1 s, the agent answers and hangs up about 4 s into the call
# (measured); the survey's 4 comes some 9 s after the hang-up, while the introduction or the
# first question plays (the keys are timed: sipp cannot wait on the prompt).
KCC_KEY_PAUSES = 11
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


@on_both_backends
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
            page = await sign_in_browser(browser, voice, "carla")
            await page.goto(voice.url("/team"))
            audio = page.locator(f'tr[data-hopper="{hopper_id}"] audio.question')
            assert await audio.get_attribute("src") == url
            await audio.evaluate("a => a.play()")
            await until_in_page(page, "document.querySelector('audio.question').currentTime > 0.5")

        plays = voice.rows(
            "SELECT actor FROM audit_log WHERE action = 'play' AND object_type = 'recording'"
        )
        assert [row.actor for row in plays] == ["carla", "carla"]  # the API, then the inbox

        mails = await mailbox.wait(1)
        mail = next(m for m in mails if m["To"] == "parkeren@gemeente.example")
        assert not mail.is_multipart()
        payload = mail.get_payload(decode=True)
        assert isinstance(payload, bytes)
        body = payload.decode()
        assert f"https://bereik.gemeente.example/team/hoppers/{hopper_id}" in body
        assert "ingesproken" in body
    finally:
        smtp.stop()


async def test_an_after_hours_callback_request_carries_the_spoken_question_to_its_hopper(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(
        installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=SETTINGS,
        hours_toml=closed_today("studiedag"),
    ) as ex:  # fmt: skip
        ex.start_asterisk()
        ex.start_serve()
        speech = speech_pcap(ex.workdir / "question.pcap", SPOKEN_SECONDS)
        # 14070 while closed: 1 during the closed message requests the callback (no menu
        # subjects: the KCC's); after the invitation and the beep, 5 s of speech and #.
        result = await ex.call(
            "14070",
            caller=CITIZEN,
            keys="1,,S#",
            key_delay_ms=3000,
            hold_ms=30_000,
            timeout_s=60,
            speech=(speech, SPOKEN_SECONDS),
        )
        assert result.returncode == 0, result.stderr
        rows = await until(
            lambda: ex.rows(
                "SELECT h.team_id, h.reason, r.path FROM question_recordings r "
                "JOIN hoppers h ON h.id = r.hopper_id"
            )
        )
        assert [(r.team_id, r.reason) for r in rows] == [("kcc", "after_hours")]
        recorded = soxi_seconds(rows[0].path)
        print(f"spoke {SPOKEN_SECONDS} s after hours, recorded {recorded:.2f} s")
        assert abs(recorded - SPOKEN_SECONDS) < 1.0


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


SURVEY = """
[survey]
shares = { vergunningen = 1.0 }
min_answers_per_agent = 1
"""


def metric(ex: Exchange, line_start: str) -> float | None:
    for line in ex.http_get("/metrics").splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


async def survey_answers_and_call(
    ex: Exchange,
) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str]]]:
    """The answers stored (team, agent, question, value), once there are any, and the
    finished call they belong to (outcome, team, agent)."""
    rows = await until(
        lambda: ex.rows(
            "SELECT call_uniqueid, team_id, agent, question, value FROM survey_answers "
            "ORDER BY question"
        )
    )
    call = await until(
        lambda: ex.rows(
            "SELECT outcome, team_id, agent FROM calls WHERE uniqueid = :u AND outcome != ''",
            u=rows[0].call_uniqueid,
        )
    )
    answers = [(r.team_id, r.agent, r.question, r.value) for r in rows]
    return answers, [(c.outcome, c.team_id, c.agent) for c in call]


@on_both_backends
async def test_the_caller_answers_the_survey_after_the_member_hangs_up_and_a_hang_up_is_no_answer(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=SURVEY) as ex:
        ex.start_asterisk()
        ex.start_serve()
        # The survey's sentences are spoken once at start-up; a key pressed while one is
        # still being made would be lost, as it would be for a real caller then.
        await until(lambda: "IVR prompts ready" in ex.serve_log.read_text(), timeout=60)
        # Carla answers after 0.3 s and hangs up after 2 s, before the caller does.
        ex.agent_phone("3001", ring_ms=300, talk_ms=2000)
        score = 'bereik_survey_average_today{question="tevredenheid",team="vergunningen"}'
        assert metric(ex, score) is None
        # 4 during the introduction (the first answer), 1 to "was your question answered".
        answered = await ex.call(
            "7001", caller=CITIZEN, keys="41", key_delay_ms=4000, hold_ms=30_000
        )
        assert answered.returncode == 0, answered.stderr
        answers, call = await survey_answers_and_call(ex)
        assert answers == [
            ("vergunningen", "3001", "beantwoord", 1),
            ("vergunningen", "3001", "tevredenheid", 4),
        ]
        assert call == [("answered_team", "vergunningen", "3001")]
        # /metrics is refreshed every few seconds: wait for the refresh after both answers.
        yes = 'bereik_survey_yes_ratio_today{question="beantwoord",team="vergunningen"}'
        assert await until(lambda: metric(ex, score) == 4.0 and metric(ex, yes) == 1.0)
        # Per agent: Carla herself and her lead see her figure, a supervisor only the team's.
        await add_users(
            ex,
            [
                ("carla", "member", "vergunningen", "3001"),
                ("lea", "lead", "vergunningen", ""),
                ("sam", "supervisor", "", ""),
            ],
        )
        seen = {}
        async with aiohttp.ClientSession() as http:
            for name in ("carla", "lea", "sam"):
                token = await token_for(ex, name)
                answer = await http.get(
                    ex.url("/api/survey"), headers={"Authorization": f"Bearer {token}"}
                )
                seen[name] = await answer.json()
        team_figure = seen["sam"]["teams"]["vergunningen"]["tevredenheid"]
        assert team_figure == {"answers": 1, "average": 4.0, "yes_ratio": None}
        assert list(seen["carla"]["agents"]) == list(seen["lea"]["agents"]) == ["3001"]
        assert seen["sam"]["agents"] == {}

        # The next caller hangs up while the survey is introduced: no answer at all.
        gone = await ex.call("7001", caller="0612345679", keys="", hold_ms=3500)
        assert gone.returncode == 0, gone.stderr
        asked = 'bereik_survey_asked_total{team="vergunningen"}'
        assert await until(lambda: metric(ex, asked) == 2.0)
        # The second survey's FastAGI session over (a session that ends is counted, one
        # the caller hung up on is logged): an answer it stored would be in the table.
        handled = 'bereik_agi_requests_total{handler="survey"}'
        await until(
            lambda: (
                (metric(ex, handled) or 0)
                + ex.serve_log.read_text().count("survey: caller hung up")
                >= 2
            )
        )
        assert len(ex.rows("SELECT id FROM survey_answers")) == 2
        assert metric(ex, score) == 4.0


MENU = """
[menu]
greeting = "Welkom."

[[menu.options]]
key = "1"
label = "Vergunningen"
team = "vergunningen"
"""


@on_both_backends
async def test_an_outage_message_shows_how_many_callers_it_saved_and_how_many_went_on(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Carla")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=MENU) as ex:
        ex.start_asterisk()
        ex.start_serve()
        await add_users(ex, [("olga", "operator", "", "")])
        output = announce(
            ex, "Door een storing kunt u vandaag niet betalen aan de balie.", "--kind", "outage"
        )
        outage = int(output.split("#", 1)[1].split()[0])
        # 6 hear the message and hang up in the menu; 4 press 0 while it plays: the KCC.
        done, went_on = await asyncio.gather(
            ex.call(ex.config.exchange.main_number, calls=6, rate=2, hold_ms=8000),
            ex.call(
                ex.config.exchange.main_number,
                caller="0612345670",
                calls=4,
                rate=2,
                keys="0",
                key_delay_ms=2500,
                hold_ms=3000,
            ),
        )
        assert done.returncode == 0, done.stderr
        assert went_on.returncode == 0, went_on.stderr
        item = f"announcement:{outage}"
        heard = await until(
            lambda: (
                len(ex.rows("SELECT id FROM announcement_hearings WHERE item = :item", item=item))
                == 10
                and ex.rows(
                    "SELECT result, count(*) AS n FROM announcement_hearings GROUP BY result "
                    "ORDER BY result"
                )
            ),
            timeout=30,
        )
        assert [(row.result, row.n) for row in heard] == [("saved", 6), ("went_on", 4)]

        saved = f'bereik_announcement_callers_today{{item="{item}",result="saved"}}'
        on = f'bereik_announcement_callers_today{{item="{item}",result="went_on"}}'
        assert await until(lambda: (metric(ex, saved), metric(ex, on)) == (6.0, 4.0))

        async with chromium() as browser:
            page = await sign_in_browser(browser, ex, "olga")
            await page.goto(ex.url("/operator"))
            row = page.locator(f'tr[data-announcement="{outage}"]')
            assert await row.locator(".saved").get_attribute("data-saved") == "6"
            assert await row.locator(".went-on").get_attribute("data-went-on") == "4"
            print(await row.locator(".savings").inner_text())


KCC_SURVEY = """
[survey]
shares = { kcc = 1.0 }
min_answers_per_agent = 1
"""


async def test_a_kcc_line_caller_answers_the_survey_after_the_agent_hangs_up(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(installation, tmp_path, ["2001"], extra_toml=KCC_SURVEY) as ex:
        await until(lambda: "IVR prompts ready" in ex.serve_log.read_text(), timeout=60)
        # The agent answers after 0.3 s and hangs up after 2 s, before the caller does.
        ex.agent_phone("2001", ring_ms=300, talk_ms=2000)
        ex.register("2001")
        await sign_in(ex, "2001")
        score = 'bereik_survey_average_today{question="tevredenheid",team="kcc"}'
        assert metric(ex, score) is None
        # 0 for the KCC in the menu; the line rings the agent; after the agent hung up,
        # 4 during the introduction (the first answer) and 1 to "was your question answered".
        answered = await ex.call(
            "14070",
            caller=CITIZEN,
            keys="0" + "," * KCC_KEY_PAUSES + "41",
            key_delay_ms=1000,
            hold_ms=30_000,
            timeout_s=90,
        )
        assert answered.returncode == 0, answered.stderr
        answers, call = await survey_answers_and_call(ex)
        assert answers == [("kcc", "2001", "beantwoord", 1), ("kcc", "2001", "tevredenheid", 4)]
        assert call == [("answered_kcc", "kcc", "2001")]
        yes = 'bereik_survey_yes_ratio_today{question="beantwoord",team="kcc"}'
        assert await until(lambda: metric(ex, score) == 4.0 and metric(ex, yes) == 1.0)


async def test_a_virtual_hold_callback_offers_the_spoken_question_to_the_agent_it_rings(
    installation: asterisk.Installation, tmp_path: Path
) -> None:
    with kcc_line(
        installation, tmp_path, ["2001"], queue=dict(callback_ring_seconds=10),
        extra_toml=SETTINGS,
    ) as ex:  # fmt: skip
        await until(lambda: "IVR prompts ready" in ex.serve_log.read_text(), timeout=60)
        # The agent's phone rings 8 s before answering, the citizen talks 5 s: the callback
        # is at the agent's phone long enough to fetch and play the question.
        ex.agent_phone("2001", ring_ms=8000, talk_ms=15_000)
        ex.citizen("answer", ring_ms=500, hold_ms=5000)
        ex.register("2001")
        await sign_in(ex, "2001")
        await feature_code(ex, ex.config.queue.pause_code, "2001")  # the caller waits in line
        await add_users(ex, [("anna", "agent", "", "2001"), ("bert", "agent", "", "2002")])
        speech = speech_pcap(ex.workdir / "question.pcap", SPOKEN_SECONDS)
        # 0 for the KCC; 1 once in line (past the entry messages); 1 confirms the number
        # during its offer; after the invitation and the beep, 5 s of speech and #.
        result = await ex.call(
            "14070", caller=CITIZEN, keys="0" + "," * 16 + "1,,1,,,S#", key_delay_ms=1000,
            hold_ms=30_000, timeout_s=90, speech=(speech, SPOKEN_SECONDS),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-300:]
        await until(lambda: ex.rows("select status from virtual_holds") == [("queued",)])
        ((path,),) = ex.rows("select path from question_recordings where hopper_id is null")
        async with chromium() as browser:
            page = await sign_in_browser(browser, ex, "anna")
            await page.goto(ex.url("/kcc"))
            await until_in_page(
                page, "document.getElementById('stream-state').textContent.includes('live')"
            )
            await feature_code(ex, ex.config.queue.ready_code, "2001")
            # The callback rings anna: the popup offers the citizen's question, a labelled
            # audio control (the label is its accessible name).
            await page.wait_for_selector("#callback-question:not([hidden])", timeout=60_000)
            control = page.get_by_label("Ingesproken vraag van de beller:")
            assert await page.text_content("#call-state") in ("Gaat over", "In gesprek")
            fetched = await control.evaluate(
                """async (audio) => {
                    const response = await fetch(audio.src);
                    const body = new Uint8Array(await response.arrayBuffer());
                    return {status: response.status, type: response.headers.get("content-type"),
                            body: Array.from(body)};
                }"""
            )
            bert = await token_for(ex, "bert")
            async with aiohttp.ClientSession() as http:
                refused = await http.get(
                    ex.url(await control.get_attribute("src") or ""),
                    headers={"Authorization": f"Bearer {bert}"},
                )
            await control.focus()
            await page.keyboard.press("Space")  # play, from the keyboard
            await until_in_page(
                page, "document.getElementById('callback-question-audio').currentTime > 0.5"
            )
            await until(lambda: ex.rows("select status from virtual_holds") == [("reached",)], 30)
        assert fetched["status"] == 200 and fetched["type"] == "audio/wav"
        played = ex.workdir / "played.wav"
        played.write_bytes(bytes(fetched["body"]))
        assert played.read_bytes() == Path(path).read_bytes()  # noqa: ASYNC240
        heard = soxi_seconds(str(played))
        print(f"spoke {SPOKEN_SECONDS} s in line; the agent's browser got {heard:.2f} s")
        assert abs(heard - SPOKEN_SECONDS) < 1.0
        assert refused.status == 403
        plays = ex.rows(
            "SELECT actor, detail FROM audit_log "
            "WHERE action = 'play' AND object_type = 'recording'"
        )
        # The fetch, then the control's play; each through /api/recordings, each audited.
        ((hold_id,),) = ex.rows("select id from virtual_holds")
        assert [tuple(p) for p in plays] == [("anna", f"virtual hold {hold_id}")] * 2
