"""`bereik privacy erase NUMBER`: every trace of the number goes, another caller's stays, and
the report counts what went; quality recordings: who hears them, and their own term."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cti.erasure.service import EraseError, erase, forms
from cti.hoppers.service import create_hopper
from cti.retention import purge
from cti.services import Services, build_services
from cti.store.db import create_engine, sessions
from cti.store.models import (
    AnnouncementHearing,
    AuditEntry,
    Call,
    CallbackAttempt,
    Hopper,
    HopperEvent,
    OutboxMail,
    QuestionRecording,
    QueueCall,
    SetAside,
    SurveyAnswer,
    User,
    VirtualHold,
)
from cti.voice import quality
from cti.voice.http import may_hear_quality
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services

CITIZEN = "0612345678"
OTHER = "0687654321"
CONFIG = Config.model_validate(
    {
        **TWO_TEAMS,
        "kcc": {"quality_share": 0.5},
        "retention": {"call_days": 90, "quality_days": 30},
    }
)


@pytest.fixture
async def services(store_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    """On a migrated SQLite and PostgreSQL store (the erase's SQL must hold on both)."""
    engine = create_engine(store_url)
    try:
        yield build_services(CONFIG, sessions(engine), home=tmp_path / "instance")
    finally:
        await engine.dispose()


def wav(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return str(path)


async def leave_traces(services: Services, number: str, tag: str, tmp_path: Path) -> None:
    """A caller's day: a call that went to the line, was recorded for quality, answered a
    survey, heard an announcement; a virtual hold; a hopper with a question, a mail, an
    attempt; work set aside; the KCC popup's look-up of the caller in the audit log."""
    call = f"call-{tag}"
    hopper = await create_hopper(
        services, team_id="burgerzaken", caller=number, reason="no_answer", call_uniqueid=call
    )
    async with services.sessions() as session, session.begin():
        session.add_all(
            [
                Call(uniqueid=call, entry="14070", caller=number, outcome="answered_kcc"),
                QueueCall(queue="kcc", uniqueid=call, caller=number),
                VirtualHold(
                    call_uniqueid=f"hold-{tag}",
                    number=number,
                    priority=1,
                    arrived_at=datetime.now(UTC),
                ),
                SurveyAnswer(call_uniqueid=call, team_id="kcc", question="q", value=4),
                AnnouncementHearing(item="info:x", call_uniqueid=call, result="went_on"),
                QuestionRecording(
                    call_uniqueid=call,
                    hopper_id=hopper.id,
                    path=wav(tmp_path / f"question-{tag}.wav"),
                ),
                QuestionRecording(
                    call_uniqueid=call,
                    path=wav(tmp_path / f"quality-{tag}.wav"),
                    kind="quality",
                    team_id="kcc",
                ),
                CallbackAttempt(hopper_id=hopper.id, member="carla"),
                SetAside(source="call events", payload={"CallerIDNum": number}, error="x"),
                AuditEntry(actor="anna", action="view", object_type="caller", object_id=number),
            ]
        )


async def count(services: Services, model: type) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_erase_removes_every_trace_of_the_number_and_reports_it(
    services: Services, tmp_path: Path
) -> None:
    await leave_traces(services, CITIZEN, "a", tmp_path)
    await leave_traces(services, OTHER, "b", tmp_path)
    # The trunk gave the same citizen's number in its international form once.
    async with services.sessions() as session, session.begin():
        session.add(Call(uniqueid="call-c", entry="14070", caller="+31612345678"))

    erased = await erase(services, CITIZEN, actor="fg")

    assert erased.counts() == {
        "calls": 2,
        "hoppers": 1,
        "hopper_events": 1,
        "callback_attempts": 1,
        "question_recordings": 1,
        "quality_recordings": 1,
        "files": 2,
        "survey_answers": 1,
        "announcement_hearings": 1,
        "mails": 1,
        "queue_calls": 1,
        "virtual_holds": 1,
        "set_aside": 1,
        "audit_masked": 1,
    }
    assert not (tmp_path / "question-a.wav").exists()
    assert not (tmp_path / "quality-a.wav").exists()
    # The other caller keeps everything: one of each.
    assert (tmp_path / "quality-b.wav").exists() and (tmp_path / "question-b.wav").exists()
    for model in (
        Call,
        Hopper,
        HopperEvent,
        CallbackAttempt,
        SurveyAnswer,
        AnnouncementHearing,
        OutboxMail,
        QueueCall,
        VirtualHold,
        SetAside,
    ):
        assert await count(services, model) == 1, model.__name__
    assert await count(services, QuestionRecording) == 2
    async with services.sessions() as session:
        rows = (await session.execute(select(AuditEntry))).scalars().all()
    texts = " ".join(f"{row.object_id} {row.detail}" for row in rows)
    assert CITIZEN not in texts and "612345678" not in texts
    assert OTHER in texts  # the other caller's look-up is not touched
    erase_row = next(row for row in rows if row.action == "erase")
    assert erase_row.actor == "fg" and erase_row.object_id == "06******78"
    assert "quality_recordings=1" in erase_row.detail

    again = await erase(services, "+31612345678", actor="fg")
    assert again.total == 0


def test_a_short_number_is_refused_and_the_forms_cover_the_international_ones() -> None:
    with pytest.raises(EraseError):
        forms("112")
    assert forms("+31612345678") == ["+31612345678", "0031612345678", "0612345678"]


async def test_quality_recordings_have_their_own_term(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        now = datetime.now(UTC)
        old, young = wav(tmp_path / "old.wav"), wav(tmp_path / "young.wav")
        async with services.sessions() as session, session.begin():
            for path, days in ((old, 31), (young, 29)):
                session.add(
                    QuestionRecording(
                        call_uniqueid=path,
                        path=path,
                        kind="quality",
                        team_id="kcc",
                        created_at=now - timedelta(days=days),
                    )
                )
        purged = await purge(services, now)
        assert purged.recordings == 1
        assert not Path(old).exists() and Path(young).exists()  # noqa: ASYNC240


def test_a_quality_recording_is_heard_by_its_teams_lead_and_supervisors_only() -> None:
    def user(role: str, team: str = "") -> User:
        return User(name=role, role=role, team_id=team)

    assert may_hear_quality(user("lead", "burgerzaken"), "burgerzaken")
    assert may_hear_quality(user("supervisor"), "burgerzaken")
    assert not may_hear_quality(user("lead", "belastingen"), "burgerzaken")
    assert not may_hear_quality(user("member", "burgerzaken"), "burgerzaken")
    assert not may_hear_quality(user("agent"), "kcc")


async def test_the_share_chooses_callers_at_random_per_entry(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        assert quality.chosen(services, "kcc", draw=0.49)
        assert not quality.chosen(services, "kcc", draw=0.5)
        assert not quality.chosen(services, "burgerzaken", draw=0.0)  # share 0: never
