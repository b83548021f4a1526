"""The retention purge: what is past its term goes, the rest (and open work) stays; once a day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from cti.announcements.service import audio_dir
from cti.hoppers.service import create_hopper
from cti.retention import BATCH, run_once
from cti.services import Services, build_services
from cti.store.db import create_engine, migrate_async, sessions
from cti.store.models import Announcement, AuditEntry, Call, Hopper, HopperEvent, OutboxMail
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services

NOW = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
CONFIG = Config.model_validate(
    {"retention": {"closed_hopper_days": 90, "call_days": 30, "audit_days": 365}}
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(CONFIG, tmp_path, metric_teams=[]) as services:
        yield services


def hopper(status: str, closed_days_ago: int | None, created_days_ago: int = 200) -> Hopper:
    created = NOW - timedelta(days=created_days_ago)
    return Hopper(
        team_id="t",
        caller="0612345678",
        reason="no_answer",
        created_at=created,
        deadline=created + timedelta(days=2),
        status=status,
        closed_at=None if closed_days_ago is None else NOW - timedelta(days=closed_days_ago),
        events=[HopperEvent(kind="created", at=created)],
    )


async def test_purges_past_retention_once_a_day(services: Services) -> None:
    async with services.sessions() as session:
        session.add_all(
            [
                hopper("closed", 91),  # past 90 days after closing: goes
                hopper("closed", 89),  # stays
                hopper("open", None),  # open work is never purged, however old
                Call(uniqueid="old", entry="14070", started_at=NOW - timedelta(days=31)),
                Call(uniqueid="new", entry="14070", started_at=NOW - timedelta(days=29)),
                AuditEntry(
                    actor="a", action="view", object_type="hopper", at=NOW - timedelta(days=366)
                ),
                AuditEntry(
                    actor="a", action="view", object_type="hopper", at=NOW - timedelta(days=364)
                ),
            ]
        )
        await session.commit()
    purged = await run_once(services, NOW)
    assert purged is not None and (purged.hoppers, purged.calls, purged.audit) == (1, 1, 1)
    # The same day again (a restart, a second process): nothing happens.
    assert await run_once(services, NOW + timedelta(hours=3)) is None
    async with services.sessions() as session:
        left = (await session.execute(select(Hopper.status, Hopper.closed_at))).all()
        assert sorted(s for s, _ in left) == ["closed", "open"]
        assert (await session.execute(select(Call.uniqueid))).scalars().all() == ["new"]
        events = (await session.execute(select(HopperEvent.hopper_id))).scalars().all()
        assert len(events) == 2  # the purged hopper's history went with it
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
        assert sorted(actions) == ["purge", "view"]


async def test_a_large_backlog_goes_in_short_batches(services: Services) -> None:
    """A first purge after months: every old hopper goes, with its history and its link,
    at most BATCH hoppers per transaction (short writes that calls can get in between)."""
    async with services.sessions() as session:
        old = [hopper("closed", 120) for _ in range(1203)]
        keep = hopper("closed", 10)
        session.add_all([*old, keep])
        await session.flush()
        keep.repeat_of_id = old[0].id  # a newer contact pointing at a purged one
        await session.commit()
    # What the database saw: each DELETE of hoppers (with its number of ids) and each commit.
    seen: list[str | int] = []
    engine = services.sessions.kw["bind"].sync_engine

    def statement(conn: object, cursor: object, sql: str, params: object, *_: object) -> None:
        if sql.startswith("DELETE FROM hoppers "):
            seen.append(len(params) if isinstance(params, tuple | list) else 1)

    def commit(conn: object) -> None:
        seen.append("commit")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        purged = await run_once(services, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    assert purged is not None and purged.hoppers == 1203
    deletes = [(n, seen[i + 1]) for i, n in enumerate(seen) if isinstance(n, int)]
    assert deletes == [(BATCH, "commit"), (BATCH, "commit"), (1203 - 2 * BATCH, "commit")]
    async with services.sessions() as session:
        left = (await session.execute(select(Hopper.id, Hopper.repeat_of_id))).all()
        assert left == [(keep.id, None)]
        events = (await session.execute(select(HopperEvent.hopper_id))).scalars().all()
        assert events == [keep.id]


async def test_sent_mails_go_and_old_audit_rows_keep_no_full_number(services: Services) -> None:
    from cti.retention import purge
    from cti.store.models import OutboxMail

    def mail(key: str, sent_days_ago: int | None) -> OutboxMail:
        sent = None if sent_days_ago is None else NOW - timedelta(days=sent_days_ago)
        return OutboxMail(
            key=key,
            recipient="team@example.org",
            subject="Terugbelverzoek #1 - 0612345678",
            body="Terugbellen: 0612345678",
            created_at=NOW - timedelta(days=40),
            next_attempt_at=NOW - timedelta(days=40),
            sent_at=sent,
        )

    def looked_up(days_ago: int) -> AuditEntry:
        return AuditEntry(
            actor="anna",
            action="view",
            object_type="caller",
            object_id="0612345678",
            detail="caller popup 0612345678",
            at=NOW - timedelta(days=days_ago),
        )

    async with services.sessions() as session:
        session.add_all(
            [
                mail("old-sent", 15),  # past 14 days after sending: goes
                mail("new-sent", 13),  # stays
                mail("never-sent", None),  # still owed: stays
                looked_up(31),  # past 30 days: masked
                looked_up(29),  # still whole
            ]
        )
        await session.commit()
    purged = await purge(services, NOW)
    assert (purged.mails, purged.masked) == (1, 1)
    async with services.sessions() as session:
        keys = set((await session.execute(select(OutboxMail.key))).scalars())
        rows = list(
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.object_type == "caller")
                    .order_by(AuditEntry.at)
                )
            ).scalars()
        )
    assert keys == {"new-sent", "never-sent"}
    assert [(r.object_id, r.detail) for r in rows] == [
        ("06******78", "caller popup 06******78"),
        ("0612345678", "caller popup 0612345678"),
    ]
    again = await purge(services, NOW)  # idempotent: a masked row is done
    assert (again.mails, again.masked) == (0, 0)


async def test_ended_announcements_go_with_their_audio_live_ones_stay(
    services: Services,
) -> None:
    folder = audio_dir(services)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("old", "recent", "live"):
        (folder / f"{name}.wav").write_bytes(b"RIFF")
    async with services.sessions() as session:
        session.add_all(
            [
                Announcement(kind="outage", audio="old", ended_at=NOW - timedelta(days=91)),
                Announcement(kind="news", audio="recent", valid_until=NOW - timedelta(days=89)),
                Announcement(kind="news", audio="live"),  # no end: still live
            ]
        )
        await session.commit()
    purged = await run_once(services, NOW)
    assert purged is not None and purged.announcements == 1
    assert sorted(p.stem for p in folder.glob("*.wav")) == ["live", "recent"]
    async with services.sessions() as session:
        left = (await session.execute(select(Announcement.audio))).scalars().all()
    assert sorted(left) == ["live", "recent"]


async def test_a_hopper_made_after_the_newest_was_purged_gets_a_new_number_and_its_mail(
    tmp_path: Path,
) -> None:
    """On the migrated SQLite schema: the purged hopper's number is not given again (its
    sent mail still holds the key "hopper-N-created", and old links name it)."""
    url = f"sqlite:///{tmp_path / 'bereik.db'}"
    config = Config.model_validate(
        {**TWO_TEAMS, "retention": {"closed_hopper_days": 1, "sent_mail_days": 14}}
    )
    await migrate_async(url)
    engine = create_engine(url)
    services = build_services(config, sessions(engine), home=tmp_path / "instance")
    try:
        first = await create_hopper(
            services, team_id="burgerzaken", caller="0612345678", reason="no_answer"
        )
        async with services.sessions() as session, session.begin():
            await session.execute(
                update(Hopper).values(status="closed", closed_at=datetime.now(UTC))
            )
            await session.execute(update(OutboxMail).values(sent_at=datetime.now(UTC)))
        purged = await run_once(services, datetime.now(UTC) + timedelta(days=2))
        assert purged is not None and purged.hoppers == 1
        second = await create_hopper(
            services, team_id="burgerzaken", caller="0687654321", reason="no_answer"
        )
        assert second.id > first.id
        async with services.sessions() as session:
            mails = (await session.execute(select(OutboxMail.key, OutboxMail.sent_at))).all()
        # The purged hopper's mail stays sent; the new one's waits to be sent.
        assert {m.key: m.sent_at is not None for m in mails} == {
            f"hopper-{first.id}-created": True,
            f"hopper-{second.id}-created": False,
        }
    finally:
        await engine.dispose()
