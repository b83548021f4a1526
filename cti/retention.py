"""Purging personal data after its retention (GDPR): a WORKER that runs once a day.

Closed hoppers go `config.retention.closed_hopper_days` after closing (with their events
and callback attempts, by cascade), calls `call_days` after they started (with the
waiting line's stays, virtual holds, survey answers, unlinked recordings and the work
the database refused and set aside), sent mails
`sent_mail_days` after sending (their bodies copy numbers and notes), audit rows
`audit_days` after they were written, quality recordings (file and row)
`quality_days` after they were made, announcements with their audio files
`announcement_days` after they ended or expired; before that, callers' numbers in audit
rows are masked after `audit_number_days` (who looked at which caller stays on record, the
full number does not). Open hoppers, unsent mails and announcements without an end are
never purged: work still owed, or a message still live.

Time is the exchange's clock (dialplan/clock.py), so an end-to-end test can run the purge
weeks ahead against a real exchange's rows and files.

"Once a day" holds across restarts and several processes: the day's `job_runs` row
(unique job+period) is claimed before purging; whoever fails to insert it skips the day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from cti.announcements.service import audio_file
from cti.audit import audit
from cti.privacy import mask_numbers_in
from cti.services import Services
from cti.store.faults import every
from cti.store.models import (
    Announcement,
    AnnouncementHearing,
    AuditEntry,
    Call,
    CallbackAttempt,
    Hopper,
    HopperEvent,
    JobRun,
    OutboxMail,
    QuestionRecording,
    QueueCall,
    SetAside,
    SurveyAnswer,
    VirtualHold,
)
from cti.voice.quality import KIND as QUALITY
from cti.voice.service import delete_recordings as _delete_recordings
from cti.voice.service import unlink_files as _unlink
from dialplan import clock

log = logging.getLogger(__name__)

JOB = "retention"
CHECK_SECONDS = 600.0


@dataclass
class Purged:
    hoppers: int = 0
    calls: int = 0
    audit: int = 0
    mails: int = 0
    masked: int = 0
    announcements: int = 0
    recordings: int = 0
    queue_calls: int = 0
    virtual_holds: int = 0
    set_aside: int = 0


# Rows deleted per transaction: each batch is a short write, so calls recording their
# rows in between never wait long for SQLite's single write lock (a first purge after
# months can have tens of thousands of rows).
BATCH = 500


async def purge(services: Services, now: datetime | None = None) -> Purged:
    """Delete what is past its retention; returns the counts (also written to the audit log)."""
    now = now or clock.now()
    keep = services.config.retention
    purged = Purged()
    hopper_cutoff = now - timedelta(days=keep.closed_hopper_days)
    while batch := await _old_hopper_ids(services, hopper_cutoff):
        async with services.sessions() as session:
            # Explicit deletes of the children: SQLite only cascades with foreign keys on.
            await session.execute(delete(HopperEvent).where(HopperEvent.hopper_id.in_(batch)))
            await session.execute(
                delete(CallbackAttempt).where(CallbackAttempt.hopper_id.in_(batch))
            )
            # A newer hopper may point at one of these as its earlier contact.
            await session.execute(
                update(Hopper).where(Hopper.repeat_of_id.in_(batch)).values(repeat_of_id=None)
            )
            await session.execute(delete(Hopper).where(Hopper.id.in_(batch)))
            # The caller's recorded question goes with its hopper: row and file.
            files = await _delete_recordings(session, QuestionRecording.hopper_id.in_(batch))
            await session.commit()
        purged.hoppers += len(batch)
        purged.recordings += _unlink(files)
    # A recording no hopper took (a virtual hold that reached the citizen) lives as
    # long as its call.
    call_cutoff = now - timedelta(days=keep.call_days)
    async with services.sessions() as session:
        files = await _delete_recordings(
            session,
            QuestionRecording.hopper_id.is_(None)
            & (QuestionRecording.kind != QUALITY)
            & (QuestionRecording.created_at < call_cutoff),
        )
        # A quality recording has its own term, however long its call is kept.
        files += await _delete_recordings(
            session,
            (QuestionRecording.kind == QUALITY)
            & (QuestionRecording.created_at < now - timedelta(days=keep.quality_days)),
        )
        await session.commit()
    purged.recordings += _unlink(files)
    for model in (SurveyAnswer, AnnouncementHearing):
        await _delete_in_batches(services, model, model.at < call_cutoff)
    purged.calls = await _delete_in_batches(
        services, Call, Call.started_at < now - timedelta(days=keep.call_days)
    )
    # The waiting line's stays and the virtual holds copy the caller's number: the same term.
    purged.queue_calls = await _delete_in_batches(
        services, QueueCall, QueueCall.joined_at < call_cutoff
    )
    purged.virtual_holds = await _delete_in_batches(
        services, VirtualHold, VirtualHold.requested_at < call_cutoff
    )
    # Work the database refused (cti/store/faults.py) holds what the work held: numbers.
    purged.set_aside = await _delete_in_batches(
        services, SetAside, SetAside.set_aside_at < call_cutoff
    )
    purged.audit = await _delete_in_batches(
        services, AuditEntry, AuditEntry.at < now - timedelta(days=keep.audit_days)
    )
    purged.mails = await _delete_in_batches(
        services,
        OutboxMail,
        OutboxMail.sent_at.is_not(None)
        & (OutboxMail.sent_at < now - timedelta(days=keep.sent_mail_days)),
    )
    purged.masked = await _mask_audit_numbers(
        services, now - timedelta(days=keep.audit_number_days)
    )
    purged.announcements = await _purge_announcements(
        services, now - timedelta(days=keep.announcement_days)
    )
    async with services.sessions() as session:
        audit(
            session,
            actor="system",
            action="purge",
            object_type="retention",
            detail=f"hoppers={purged.hoppers} calls={purged.calls} audit={purged.audit} "
            f"mails={purged.mails} masked={purged.masked} "
            f"announcements={purged.announcements} recordings={purged.recordings} "
            f"queue_calls={purged.queue_calls} virtual_holds={purged.virtual_holds} "
            f"set_aside={purged.set_aside}",
        )
        await session.commit()
    return purged


async def _old_hopper_ids(services: Services, cutoff: datetime) -> list[int]:
    async with services.sessions() as session:
        rows = await session.execute(
            select(Hopper.id)
            .where(
                Hopper.status == "closed",
                Hopper.closed_at.is_not(None),
                Hopper.closed_at < cutoff,
            )
            .limit(BATCH)
        )
        return list(rows.scalars())


async def _delete_in_batches(services: Services, model: Any, condition: Any) -> int:
    total = 0
    while True:
        async with services.sessions() as session:
            ids = list(
                (await session.execute(select(model.id).where(condition).limit(BATCH))).scalars()
            )
            if not ids:
                return total
            await session.execute(delete(model).where(model.id.in_(ids)))
            await session.commit()
        total += len(ids)


async def _purge_announcements(services: Services, cutoff: datetime) -> int:
    """Delete announcements that ended (or expired) before `cutoff`, then their audio."""
    ended = func.coalesce(Announcement.ended_at, Announcement.valid_until)
    async with services.sessions() as session:
        rows = (await session.execute(select(Announcement).where(ended < cutoff))).scalars()
        gone = {row.id: row.audio for row in rows}
        if not gone:
            return 0
        await session.execute(delete(Announcement).where(Announcement.id.in_(gone)))
        await session.commit()
        kept = set((await session.scalars(select(Announcement.audio))).all())
    # The rows first: a file whose row is gone is only an orphan the sweeper would take too.
    for audio in set(gone.values()) - kept - {""}:
        audio_file(services, audio).unlink(missing_ok=True)
    return len(gone)


# Audit rows that name a caller by number: the KCC popup's look-up of a caller.
NUMBER_OBJECTS = ("caller",)


async def _mask_audit_numbers(services: Services, cutoff: datetime) -> int:
    """Mask callers' numbers in audit rows older than `cutoff` (object id and detail)."""
    total = 0
    last_id = 0
    while True:
        async with services.sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(AuditEntry)
                        .where(
                            AuditEntry.at < cutoff,
                            AuditEntry.id > last_id,
                            AuditEntry.object_type.in_(NUMBER_OBJECTS),
                            ~AuditEntry.object_id.contains("*"),  # not masked yet
                        )
                        .order_by(AuditEntry.id)
                        .limit(BATCH)
                    )
                ).scalars()
            )
            if not rows:
                return total
            for row in rows:
                masked = mask_numbers_in(row.object_id)
                # A short or odd value has no digits to hide; its stars mark it as done.
                row.object_id = masked if masked != row.object_id else "*" + row.object_id[:63]
                row.detail = mask_numbers_in(row.detail)
                total += 1
            last_id = rows[-1].id
            await session.commit()


async def run_once(services: Services, now: datetime | None = None) -> Purged | None:
    """Purge unless today's run is already done (by this or another process)."""
    now = now or clock.now()
    day = now.astimezone(ZoneInfo(services.config.exchange.timezone)).date().isoformat()
    async with services.sessions() as session:
        session.add(JobRun(job=JOB, period=day, at=now))
        try:
            await session.commit()
        except IntegrityError:
            return None
    try:
        purged = await purge(services, now)
    except Exception:
        # Give the claim back, so the next check (or another process) tries again today.
        async with services.sessions() as session:
            await session.execute(delete(JobRun).where(JobRun.job == JOB, JobRun.period == day))
            await session.commit()
        raise
    log.info(
        "retention: purged %d closed hoppers, %d calls, %d waiting-line stays, %d virtual "
        "holds, %d audit rows, %d sent mails, %d announcements; masked numbers in %d audit rows",
        purged.hoppers,
        purged.calls,
        purged.queue_calls,
        purged.virtual_holds,
        purged.audit,
        purged.mails,
        purged.announcements,
        purged.masked,
    )
    return purged


async def run(services: Services) -> None:
    """WORKER entry point: check every ten minutes whether today's purge is due."""
    # A store that is down is waited out; any other fault is the supervisor's (the day's
    # claim was given back, so the restarted worker purges again).
    await every(CHECK_SECONDS, lambda: run_once(services), what="the retention purge", logger=log)
