"""The right to erasure (GDPR art. 17): every trace of one caller's number, at once.

`bereik privacy erase NUMBER` (cti/erasure/cli.py) removes what the exchange keeps about a
number before its retention term would: the calls from it (with their journey), the
waiting line's stays and virtual holds, the hoppers for it (with their history and
callback attempts), the recordings of those calls and hoppers (the caller's question and
quality recordings: rows and files, wherever the row says the file is), the survey answers
and announcement hearings of those calls, the mails in the outbox about those hoppers or
naming the number, and work set aside that holds it. The audit log is the record of who
looked: its rows stay, with the number masked. The erasure itself is audited (masked).

A number is matched in its national and international forms (0612345678, +31612345678,
0031612345678), as callers' numbers arrive in either from a trunk.

It lives above the features (like retention) because it deletes their rows; cti.privacy
(masking, the one own-call rule) stays at the bottom, where every screen can use it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, false, or_, select, update

from cti.audit import audit
from cti.privacy import mask_number, mask_numbers_in, national
from cti.services import Services
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
    VirtualHold,
)
from cti.voice.quality import KIND as QUALITY
from cti.voice.service import delete_recordings, unlink_files


class EraseError(ValueError):
    """Not a number that can be erased (too short: it would match others)."""


@dataclass
class Erased:
    """How many of each kind went (the command's report)."""

    calls: int = 0
    hoppers: int = 0
    hopper_events: int = 0
    callback_attempts: int = 0
    question_recordings: int = 0
    quality_recordings: int = 0
    files: int = 0
    survey_answers: int = 0
    announcement_hearings: int = 0
    mails: int = 0
    queue_calls: int = 0
    virtual_holds: int = 0
    set_aside: int = 0
    audit_masked: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)

    @property
    def total(self) -> int:
        return sum(self.counts().values())


def forms(number: str) -> list[str]:
    """The forms a number may be stored in: as given, national, +31 and 0031."""
    plain = national(number)
    if len(plain.lstrip("+")) < 6:
        raise EraseError(f"{number!r} is not a phone number (at least 6 digits)")
    found = {number.strip(), plain}
    if plain.startswith("0") and not plain.startswith("00"):
        found |= {"+31" + plain[1:], "0031" + plain[1:]}
    return sorted(found)


async def erase(services: Services, number: str, actor: str) -> Erased:
    """Remove every trace of `number`; returns the counts per kind (also audited)."""
    numbers = forms(number)
    erased = Erased()
    files: list[str] = []
    async with services.sessions() as session:
        calls = await session.execute(select(Call.uniqueid).where(Call.caller.in_(numbers)))
        uniqueids = set(calls.scalars())
        hopper_ids = list(
            (
                await session.execute(
                    select(Hopper.id).where(
                        or_(Hopper.caller.in_(numbers), _in(Hopper.call_uniqueid, uniqueids))
                    )
                )
            ).scalars()
        )
        holds = (
            await session.execute(
                select(VirtualHold.call_uniqueid).where(VirtualHold.number.in_(numbers))
            )
        ).scalars()
        uniqueids |= set(holds)
        queued = (
            await session.execute(select(QueueCall.uniqueid).where(QueueCall.caller.in_(numbers)))
        ).scalars()
        uniqueids |= set(queued)
        ids = sorted(uniqueids)

        # Recordings first: their files are unlinked only after the rows' commit.
        of_these = or_(
            _in(QuestionRecording.call_uniqueid, ids), _in(QuestionRecording.hopper_id, hopper_ids)
        )
        erased.quality_recordings = await _count(
            session, QuestionRecording, of_these & (QuestionRecording.kind == QUALITY)
        )
        erased.question_recordings = await _count(
            session, QuestionRecording, of_these & (QuestionRecording.kind != QUALITY)
        )
        files = await delete_recordings(session, of_these)

        erased.mails = await _delete(session, OutboxMail, _mails(numbers, hopper_ids))
        erased.hopper_events = await _delete(
            session, HopperEvent, _in(HopperEvent.hopper_id, hopper_ids)
        )
        erased.callback_attempts = await _delete(
            session, CallbackAttempt, _in(CallbackAttempt.hopper_id, hopper_ids)
        )
        if hopper_ids:
            await session.execute(
                update(Hopper).where(Hopper.repeat_of_id.in_(hopper_ids)).values(repeat_of_id=None)
            )
        erased.hoppers = await _delete(session, Hopper, _in(Hopper.id, hopper_ids))
        erased.survey_answers = await _delete(
            session, SurveyAnswer, _in(SurveyAnswer.call_uniqueid, ids)
        )
        erased.announcement_hearings = await _delete(
            session, AnnouncementHearing, _in(AnnouncementHearing.call_uniqueid, ids)
        )
        erased.queue_calls = await _delete(
            session,
            QueueCall,
            or_(QueueCall.caller.in_(numbers), _in(QueueCall.uniqueid, ids)),
        )
        erased.virtual_holds = await _delete(
            session,
            VirtualHold,
            or_(VirtualHold.number.in_(numbers), _in(VirtualHold.call_uniqueid, ids)),
        )
        erased.calls = await _delete(
            session, Call, or_(Call.caller.in_(numbers), _in(Call.uniqueid, ids))
        )
        erased.set_aside = await _delete_set_aside(session, numbers, ids)
        erased.audit_masked = await _mask_audit(session, numbers)
        audit(
            session,
            actor=actor,
            action="erase",
            object_type="caller",
            object_id=mask_number(national(number)),
            detail=" ".join(f"{kind}={n}" for kind, n in erased.counts().items()),
        )
        await session.commit()
    erased.files = await asyncio.to_thread(_remove, files)
    return erased


def _remove(paths: list[str]) -> int:
    """Unlink the files; how many there were (a recording nobody answered has none)."""
    there = sum(1 for path in paths if Path(path).exists())
    unlink_files(paths)
    return there


def _in(column: Any, values: Any) -> Any:
    values = list(values)
    return column.in_(values) if values else false()


async def _count(session: Any, model: Any, condition: Any) -> int:
    return len(list((await session.execute(select(model.id).where(condition))).scalars()))


async def _delete(session: Any, model: Any, condition: Any) -> int:
    ids = list((await session.execute(select(model.id).where(condition))).scalars())
    if ids:
        await session.execute(delete(model).where(model.id.in_(ids)))
    return len(ids)


def _mails(numbers: list[str], hopper_ids: list[int]) -> Any:
    """The outbox rows about these hoppers (their keys) or naming the number (sent or not)."""
    about = [OutboxMail.key.like(f"hopper-{hopper_id}-%") for hopper_id in hopper_ids]
    naming = [OutboxMail.body.contains(n) | OutboxMail.subject.contains(n) for n in numbers]
    return or_(*about, *naming)


async def _delete_set_aside(session: Any, numbers: list[str], ids: list[str]) -> int:
    """Work set aside is a JSON payload: matched on its text (the table is small)."""
    rows = (await session.execute(select(SetAside.id, SetAside.payload))).all()
    needles = [*numbers, *ids]
    gone = [row.id for row in rows if any(n in json.dumps(row.payload) for n in needles)]
    if gone:
        await session.execute(delete(SetAside).where(SetAside.id.in_(gone)))
    return len(gone)


async def _mask_audit(session: Any, numbers: list[str]) -> int:
    """Audit rows naming the number keep who did what, not the number."""
    condition = or_(
        *(AuditEntry.object_id.contains(n) | AuditEntry.detail.contains(n) for n in numbers)
    )
    rows = list((await session.execute(select(AuditEntry).where(condition))).scalars())
    for row in rows:
        row.object_id = mask_numbers_in(row.object_id)
        row.detail = mask_numbers_in(row.detail)
    return len(rows)
