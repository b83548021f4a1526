"""Announcements: validity windows, play order, scopes, and audio that never goes silent.

A real SQLite database (migrated by Alembic) and the real espeak-ng/sox; no mocks.
"""

from __future__ import annotations

import os
import time
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from cti.announcements import http, service
from cti.announcements.cli import parse_time
from cti.announcements.prompts import _touched, prompt, prompt_file
from cti.announcements.service import AnnouncementError, Draft
from cti.announcements.sweeper import sweep
from cti.services import Services, build_services
from cti.store.db import create_engine, migrate_async, sessions
from cti.store.models import Announcement, AuditEntry
from cti.tts import EspeakEngine, engine_for
from cti.users.service import create_user, issue_token
from cti.web.app import create_app
from dialplan.config import Config, ConfigError, load

TOML = """
[asterisk]
instance_dir = "/var/lib/bereik/unit"

[[teams]]
id = "parkeren"
name = "Parkeren"
number = "7003"
mailbox = "p@example.org"

[[menu.options]]
key = "1"
label = "Parkeren"
team = "parkeren"

[[menu.options]]
key = "2"
label = "Overig"
[[menu.options.submenu]]
key = "1"
label = "KCC"
kcc = true
"""

NOW = datetime.now(UTC)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    path = tmp_path / "bereik.toml"
    url = f"sqlite:///{tmp_path / 'bereik.db'}"
    path.write_text(TOML + f'\n[database]\nurl = "{url}"\n')
    config: Config = load(path)
    await migrate_async(url)
    engine = create_engine(url)
    yield build_services(config, sessions(engine), home=tmp_path / "instance")
    await engine.dispose()


async def _stored(services: Services, **fields: object) -> Announcement:
    """A row as it would be after create(), with a real (tiny) audio file behind it."""
    audio = f"test-{len(list(service.audio_dir(services).glob('*')))}"
    service.audio_dir(services).mkdir(parents=True, exist_ok=True)
    with wave.open(str(service.audio_file(services, audio)), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    values: dict[str, object] = {
        "text": "x",
        "kind": "news",
        "scope": "all",
        "valid_from": NOW - timedelta(hours=1),
        "audio": audio,
        **fields,
    }
    row = Announcement(**values)
    async with services.sessions() as session:
        session.add(row)
        await session.commit()
    return row


async def test_validity_window(services: Services) -> None:
    live = await _stored(services, valid_until=NOW + timedelta(hours=1))
    forever = await _stored(services)
    await _stored(services, valid_from=NOW + timedelta(minutes=5))  # not yet
    await _stored(services, valid_until=NOW - timedelta(seconds=1))  # expired
    await _stored(services, ended_at=NOW - timedelta(minutes=1))  # ended by hand
    async with services.sessions() as session:
        found = await service.active(session, "all", NOW)
    assert {a.id for a in found} == {live.id, forever.id}
    # The pure rule the web screens use agrees with the query.
    async with services.sessions() as session:
        everything = (await session.scalars(select(Announcement))).all()
    assert {a.id for a in everything if service.is_active(a, NOW)} == {live.id, forever.id}


async def _get(services: Services, announcement_id: int) -> Announcement:
    async with services.sessions() as session:
        found = await session.get(Announcement, announcement_id)
    assert found is not None
    return found


async def test_expiry_needs_no_action(services: Services) -> None:
    row = await _stored(services, valid_until=NOW + timedelta(minutes=10))
    async with services.sessions() as session:
        assert [a.id for a in await service.active(session, "all", NOW)] == [row.id]
        later = NOW + timedelta(minutes=10)
        assert await service.active(session, "all", later) == []


async def test_outage_before_closure_before_news_then_priority(services: Services) -> None:
    news_high = await _stored(services, kind="news", priority=50)
    outage = await _stored(services, kind="outage")
    news_low = await _stored(services, kind="news", priority=1)
    closure = await _stored(services, kind="closure")
    async with services.sessions() as session:
        order = [a.id for a in await service.active(session, "all", NOW)]
    assert order == [outage.id, closure.id, news_high.id, news_low.id]


async def test_scopes_are_separate(services: Services) -> None:
    everyone = await _stored(services, scope="all")
    option = await _stored(services, scope="menu:1")
    team = await _stored(services, scope="team:parkeren")
    paths = await service.announcements_for(services, "team:parkeren")
    assert paths == [f"/var/lib/bereik/unit/sounds/announcements/{team.audio}"]
    assert [i for i, _ in await service.playable(services, "menu:1")] == [option.id]
    assert [i for i, _ in await service.playable(services, "all")] == [everyone.id]


async def test_missing_audio_file_is_skipped_not_played(services: Services) -> None:
    row = await _stored(services)
    service.audio_file(services, row.audio).unlink()
    assert await service.announcements_for(services, "all") == []


@pytest.mark.parametrize(
    ("draft", "message"),
    [
        (Draft(kind="storing", text="x"), "kind 'storing' is not one of"),
        (Draft(kind="news", text="   "), "the text is empty"),
        (Draft(kind="news", text="a" * 1001), "at most 1000"),
        (Draft(kind="news", text="x", scope="menu:9"), "the menu has no option 9"),
        (Draft(kind="news", text="x", scope="menu:2.7"), "the menu has no option 2.7"),
        (Draft(kind="news", text="x", scope="team:belastingen"), "there is no team"),
        (Draft(kind="news", text="x", scope="iedereen"), "is not valid"),
        (Draft(kind="news", text="x", priority=101), "priority"),
        (
            Draft(kind="news", text="x", valid_from=datetime(2026, 12, 1, 8)),
            "valid_from needs a timezone",
        ),
        (
            Draft(kind="news", text="x", valid_from=NOW, valid_until=NOW - timedelta(hours=1)),
            "valid_until must be after valid_from",
        ),
    ],
)
async def test_refused_with_a_clear_message(services: Services, draft: Draft, message: str) -> None:
    with pytest.raises(AnnouncementError, match=message.replace("(", r"\(")):
        await service.create(services, draft)
    async with services.sessions() as session:
        assert await service.active(session, None) == []


async def test_created_by_text_is_spoken_and_live_at_once(services: Services) -> None:
    made = await service.create(
        services,
        Draft(kind="outage", text="Storing: de website is niet bereikbaar.", scope="menu:2.1"),
    )
    with wave.open(str(service.audio_file(services, made.audio)), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 8000  # more than a second of speech
    assert [i for i, _ in await service.playable(services, "menu:2.1")] == [made.id]
    async with services.sessions() as session:
        rows = (await session.execute(Announcement.__table__.select())).all()
    assert len(rows) == 1


async def test_failed_synthesis_keeps_the_previous_audio(services: Services) -> None:
    made = await service.create(services, Draft(kind="news", text="Eerste tekst."))
    before = service.audio_file(services, made.audio).read_bytes()
    services.tts = EspeakEngine(espeak="/nonexistent/espeak-ng")
    with pytest.raises(AnnouncementError, match="speech synthesis failed: espeak-ng not installed"):
        await service.change_text(services, made.id, "Nieuwe tekst.", actor="olga")
    still = await _get(services, made.id)
    assert (still.text, still.audio) == ("Eerste tekst.", made.audio)
    assert service.audio_file(services, made.audio).read_bytes() == before
    assert await service.announcements_for(services, "all")  # callers still hear it


async def test_changed_text_gets_new_audio_and_the_old_file_goes(services: Services) -> None:
    made = await service.create(services, Draft(kind="news", text="Eerste tekst."))
    audio = await service.change_text(services, made.id, "Tweede tekst.", actor="olga")
    assert audio != made.audio
    assert not service.audio_file(services, made.audio).exists()
    assert (await _get(services, made.id)).text == "Tweede tekst."


async def test_a_non_audio_upload_is_refused(services: Services, tmp_path: Path) -> None:
    fake = tmp_path / "bericht.mp3"
    fake.write_bytes(b"%PDF-1.7 not audio at all")
    with pytest.raises(AnnouncementError, match="not an audio file"):
        await service.create(services, Draft(kind="news"), upload=fake)
    assert list(service.audio_dir(services).glob("*.wav")) == []


async def test_end_stops_it_now_and_is_kept(services: Services) -> None:
    row = await _stored(services)
    ended = await service.end(services, row.id, actor="olga")
    assert ended.ended_at is not None
    assert await service.announcements_for(services, "all") == []
    assert [a.id for a in await service.listing(services, only_active=False)] == [row.id]
    with pytest.raises(LookupError):
        await service.end(services, 999, actor="olga")


def test_cli_times_are_local_unless_an_offset_is_given() -> None:
    winter = parse_time("2026-12-01T17:00", "Europe/Amsterdam")
    assert winter == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert parse_time("2026-12-01T17:00+00:00", "Europe/Amsterdam") == datetime(
        2026, 12, 1, 17, 0, tzinfo=UTC
    )
    assert parse_time("", "Europe/Amsterdam") is None
    with pytest.raises(AnnouncementError, match="is not a time"):
        parse_time("morgen", "Europe/Amsterdam")


async def _tokens(services: Services) -> dict[str, str]:
    tokens = {}
    async with services.sessions() as session:
        for name, role in (("olga", "operator"), ("anna", "agent")):
            user = await create_user(session, name, "een-lang-wachtwoord", role)
            tokens[role] = await issue_token(session, user)
        await session.commit()
    return tokens


async def test_api_create_list_end_and_access(services: Services) -> None:
    tokens = await _tokens(services)
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    agent = {"Authorization": f"Bearer {tokens['agent']}"}
    body = {
        "text": "Storing: betalen aan de balie kan vandaag niet.",
        "kind": "outage",
        "scope": "all",
        "valid_until": (NOW + timedelta(hours=2)).isoformat(),
        "priority": 10,
    }
    async with TestClient(TestServer(create_app(services, [http.setup]))) as client:
        assert (await client.get("/api/announcements")).status == 401
        refused = await client.post("/api/announcements", json=body, headers=agent)
        assert refused.status == 403
        assert "error" in await refused.json()

        made = await client.post("/api/announcements", json=body, headers=operator)
        assert made.status == 201, await made.text()
        created = await made.json()
        assert created["active"] is True and created["author"] == "olga"
        sound = await client.get(created["audio_url"], headers=agent)
        assert sound.status == 200 and (await sound.read())[:4] == b"RIFF"

        listed = await client.get("/api/announcements?active=true", headers=agent)
        assert [a["id"] for a in await listed.json()] == [created["id"]]

        for bad, message in (
            ({**body, "kind": "storing"}, "kind 'storing'"),
            ({**body, "scope": "team:onbekend"}, "there is no team"),
            ({**body, "valid_until": "morgen"}, "not an ISO 8601 time"),
            ({**body, "priority": "hoog"}, "priority"),
            ({**body, "text": 12}, "text must be a string"),
        ):
            response = await client.post("/api/announcements", json=bad, headers=operator)
            assert response.status == 400, bad
            assert message in (await response.json())["error"]
        garbage = await client.post("/api/announcements", data=b"{", headers=operator)
        assert garbage.status == 400

        ended = await client.delete(f"/api/announcements/{created['id']}", headers=operator)
        assert ended.status == 200 and (await ended.json())["active"] is False
        assert (await client.delete("/api/announcements/999", headers=operator)).status == 404
        listed = await client.get("/api/announcements?active=true", headers=agent)
        assert await listed.json() == []
    async with services.sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert {"create", "end"} <= set(actions)


async def test_api_upload_refuses_what_is_not_audio(services: Services) -> None:
    tokens = await _tokens(services)
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    async with TestClient(TestServer(create_app(services, [http.setup]))) as client:
        form = FormData()
        form.add_field("kind", "news")
        form.add_field("file", b"MZ\x90\x00 an exe", filename="bericht.wav")
        response = await client.post("/api/announcements/upload", data=form, headers=operator)
        assert response.status == 400
        assert "not an audio file" in (await response.json())["error"]


def test_the_voice_is_chosen_by_configuration(tmp_path: Path) -> None:
    path = tmp_path / "bereik.toml"
    path.write_text('[tts]\nengine = "piper"\n')
    with pytest.raises(ConfigError, match=r"tts\.engine: unknown TTS engine 'piper'"):
        load(path)
    path.write_text('[tts]\nengine = "espeak-ng"\nspeed = 140\ntimeout_seconds = 5\n')
    chosen = engine_for(load(path).tts)
    assert isinstance(chosen, EspeakEngine)
    assert (chosen.speed, chosen.timeout) == (140, 5.0)


async def test_sweeper_removes_only_audio_nobody_plays(services: Services) -> None:
    kept = await _stored(services)  # referenced by a row: stays, however old
    ended = await _stored(services, ended_at=NOW)  # ended: kept for listening back
    directory = service.audio_dir(services)
    orphan_old, orphan_new = directory / "tts-old.wav", directory / "tts-new.wav"
    prompts = services.sounds_dir / "prompts"
    prompts.mkdir(parents=True)
    stale, fresh = prompts / "stale.wav", prompts / "fresh.wav"
    for path in (orphan_old, orphan_new, stale, fresh):
        path.write_bytes(b"RIFF")
    now = time.time()
    day = 24 * 3600
    for path, age in ((orphan_old, 2 * day), (orphan_new, 3600), (stale, 31 * day)):
        os.utime(path, (now - age, now - age))
    for row in (kept, ended):
        path = service.audio_file(services, row.audio)
        os.utime(path, (now - 400 * day, now - 400 * day))

    assert await sweep(services, now) == 2
    left = {p.name for p in directory.glob("*.wav")} | {p.name for p in prompts.glob("*.wav")}
    assert left == {f"{kept.audio}.wav", f"{ended.audio}.wav", "tts-new.wav", "fresh.wav"}


async def test_a_prompt_in_use_is_marked_so_it_is_not_swept(services: Services) -> None:
    path = prompt_file(services, await prompt(services, "Welkom."))
    old = time.time() - 40 * 24 * 3600
    os.utime(path, (old, old))
    _touched.clear()
    await prompt(services, "Welkom.")  # a call uses it
    assert path.stat().st_mtime > old + 24 * 3600
    assert await sweep(services) == 0


async def test_api_extends_an_outage_and_refuses_an_end_before_its_start(
    services: Services,
) -> None:
    tokens = await _tokens(services)
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    row = await _stored(services, kind="outage", valid_until=NOW + timedelta(minutes=30))
    later = (NOW + timedelta(hours=5)).isoformat()
    async with TestClient(TestServer(create_app(services, [http.setup]))) as client:
        url = f"/api/announcements/{row.id}"
        extended = await client.patch(url, json={"valid_until": later}, headers=operator)
        assert extended.status == 200, await extended.text()
        assert (await extended.json())["valid_until"] == later
        early = (NOW - timedelta(days=1)).isoformat()
        refused = await client.patch(url, json={"valid_until": early}, headers=operator)
        assert refused.status == 400
        assert "after valid_from" in (await refused.json())["error"]
        odd = await client.patch(url, json={"kind": "news"}, headers=operator)
        assert odd.status == 400
    assert (await _get(services, row.id)).valid_until == NOW + timedelta(hours=5)
