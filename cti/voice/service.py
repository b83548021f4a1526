"""Question recordings: where they live, how long they are, who may hear them.

A recording is made by the call (agi/handlers/question.py) right after the caller
confirmed a callback, and stored here keyed by the call's uniqueid. The hopper that carries
that call's request links it (cti.hoppers.service.create_hopper, in the hopper's own
transaction), also when the hopper comes later (a virtual hold not reached). The file is
0600 and is deleted with its hopper (cti/retention.py); a recording whose call made no
hopper (a virtual hold that reached the citizen) goes after ``retention.call_days``; until
then the KCC popup offers it to the agent the callback rings (cti/voice/http.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from cti.services import Services
from cti.store.models import Hopper, QuestionRecording, VirtualHold
from dialplan.private import restrict

# Under this a "recording" is a slip of the finger or only the beep: not kept.
MIN_SECONDS = 0.5


def recordings_dir(services: Services) -> Path:
    """Inside the Asterisk instance (Asterisk writes the file); 0700 like the rest."""
    return services.instance_dir / "recordings"


def wav_seconds(path: Path) -> float:
    """The length of a WAV file Asterisk wrote; 0 when it is missing or unreadable."""
    try:
        with contextlib.closing(wave.open(str(path), "rb")) as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else 0.0
    except (OSError, EOFError, wave.Error):
        return 0.0


async def keep(services: Services, call_uniqueid: str, path: Path) -> QuestionRecording | None:
    """Store a recording of this call, or delete the file when it is too short to be a
    question (the caller pressed # at once, or said nothing)."""
    seconds = await asyncio.to_thread(_measure_and_protect, path)
    if seconds < MIN_SECONDS:
        return None
    row = QuestionRecording(
        call_uniqueid=call_uniqueid[:64], path=str(path), seconds=round(seconds, 2)
    )
    async with services.sessions() as session, session.begin():
        session.add(row)
    return row


def _measure_and_protect(path: Path) -> float:
    seconds = wav_seconds(path)
    if seconds < MIN_SECONDS:
        path.unlink(missing_ok=True)
    else:
        restrict(path)  # Asterisk wrote it with its own umask; a citizen's voice is private
    return seconds


async def delete_recordings(session: Any, condition: Any) -> list[str]:
    """Delete the recording rows matching `condition` (questions and quality recordings
    alike); their files, to unlink after the commit (`unlink_files`)."""
    paths = list((await session.execute(select(QuestionRecording.path).where(condition))).scalars())
    if paths:
        await session.execute(delete(QuestionRecording).where(condition))
    return paths


def unlink_files(paths: list[str]) -> int:
    """Remove the files of deleted recordings (one never written, too); how many rows."""
    for path in paths:
        Path(path).unlink(missing_ok=True)
    return len(paths)


async def recordings_of(services: Services, hopper_ids: list[int]) -> dict[int, list[int]]:
    """Recording ids per hopper, oldest first (a repeat contact may add a second)."""
    if not hopper_ids:
        return {}
    async with services.sessions() as session:
        rows = (
            await session.execute(
                select(QuestionRecording.id, QuestionRecording.hopper_id)
                .where(QuestionRecording.hopper_id.in_(hopper_ids))
                .order_by(QuestionRecording.id)
            )
        ).all()
    found: dict[int, list[int]] = {}
    for recording_id, hopper_id in rows:
        if hopper_id is not None:
            found.setdefault(hopper_id, []).append(recording_id)
    return found


async def recording_and_owner(
    services: Services, recording_id: int
) -> tuple[QuestionRecording, Hopper | None, VirtualHold | None] | None:
    """The recording with what it belongs to: its hopper, or (none made: a virtual hold
    whose callback reached or is reaching the citizen) the virtual hold of its call. None
    when it exists for neither (then nobody may hear it)."""
    async with services.sessions() as session:
        row = await session.get(QuestionRecording, recording_id)
        if row is None:
            return None
        if row.hopper_id is not None:
            hopper = await session.get(Hopper, row.hopper_id)
            return None if hopper is None else (row, hopper, None)
        hold = await session.scalar(
            select(VirtualHold).where(VirtualHold.call_uniqueid == row.call_uniqueid)
        )
    return None if hold is None else (row, None, hold)


async def callback_questions(
    services: Services, hold_id: int
) -> tuple[VirtualHold, list[QuestionRecording]] | None:
    """A virtual hold and the questions its caller spoke, oldest first."""
    async with services.sessions() as session:
        hold = await session.get(VirtualHold, hold_id)
        if hold is None:
            return None
        rows = (
            await session.execute(
                select(QuestionRecording)
                .where(QuestionRecording.call_uniqueid == hold.call_uniqueid)
                .order_by(QuestionRecording.id)
            )
        ).scalars()
        return hold, list(rows)
