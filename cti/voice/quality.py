"""Quality recordings: a share of answered calls, recorded with the caller's consent.

Per entry (the KCC, or a team) ``quality_share`` of the calls is chosen at random before
the call is put through (agi/handlers/quality.py). The chosen caller hears that the call
may be recorded and can refuse with a key; a caller who does not refuse gets a
``MixMonitor`` on their own channel with option ``b``: only what is said while bridged to
the agent or member goes into the file (not the ringing, not a callback offer after it).
The agent can stop it (``stop``: AMI ``StopMixMonitor`` through the one AMI client; with
several nodes sent to the node that carries the caller's channel, cti/ami/nodes.py
``carrying``, as coaching's ChanSpy is: a MixMonitor is its own Asterisk's).

The recording is stored as a question recording is (cti/voice/service.py): the same
folder, a ``question_recordings`` row with ``kind = "quality"`` and the team, 0600, played
through the same route. Only the team's lead and the supervisors (and admin) hear it,
audited; retention deletes it after ``retention.quality_days``; ``bereik privacy erase``
with every other trace of the caller's number. With several nodes every node records into
that one folder (the shared ``[asterisk] instance_dir``, named to MixMonitor by its full
path), so the row's path is the file whichever node made it: serving, retention and
erasure need no node.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from cti.ami.client import AmiActionFailed, AmiError, AmiNotConnected, AmiTimeout
from cti.ami.nodes import AmiNodes
from cti.audit import audit
from cti.errors import DomainError
from cti.services import Services
from cti.store.models import Call, QuestionRecording, User
from cti.voice.service import recordings_dir, wav_seconds
from dialplan.private import restrict, write_private

KIND = "quality"
TIMEOUT = 5.0
# Who may hear a quality recording besides the team's own lead.
LISTENERS = ("supervisor", "admin")


def chosen(services: Services, team: str, draw: float | None = None) -> bool:
    """Whether this caller of `team` ("kcc" or a team id) is asked to be recorded."""
    share = services.config.quality_share(team)
    if share <= 0:
        return False
    return (random.random() if draw is None else draw) < share


async def prepare(services: Services, call_uniqueid: str, team: str) -> Path:
    """The file a consenting caller's call is recorded to, and its row (stored before the
    call is bridged: MixMonitor writes it only then; a call nobody answered leaves the
    empty file, which lists as nothing and goes with its row)."""
    directory = recordings_dir(services)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"quality-{secrets.token_hex(8)}.wav"
    # Made here, empty and 0600: MixMonitor opens an existing file without changing its
    # mode, so the voice is private from its first byte whatever Asterisk's umask is.
    await asyncio.to_thread(write_private, path, b"")
    async with services.sessions() as session, session.begin():
        session.add(
            QuestionRecording(
                call_uniqueid=call_uniqueid[:64],
                path=str(path),
                seconds=0.0,
                kind=KIND,
                team_id=team[:32],
            )
        )
    return path


@dataclass
class Kept:
    id: int
    team: str
    call_uniqueid: str
    caller: str
    started_at: datetime | None
    seconds: float


async def kept(services: Services, teams: list[str] | None) -> list[Kept]:
    """The quality recordings with a file, newest first; of `teams` (None: every team)."""
    query = (
        select(QuestionRecording, Call.caller, Call.started_at)
        .outerjoin(Call, Call.uniqueid == QuestionRecording.call_uniqueid)
        .where(QuestionRecording.kind == KIND)
        .order_by(QuestionRecording.id.desc())
        .limit(500)
    )
    if teams is not None:
        query = query.where(QuestionRecording.team_id.in_(teams))
    async with services.sessions() as session:
        rows = (await session.execute(query)).all()
    found = []
    for row, caller, started_at in rows:
        seconds = await asyncio.to_thread(_measure, Path(row.path))
        if seconds > 0:
            found.append(
                Kept(row.id, row.team_id, row.call_uniqueid, caller or "", started_at, seconds)
            )
    return found


def _measure(path: Path) -> float:
    # MixMonitor's file is made by Asterisk; bereik's umask (077) makes it private, and
    # this makes sure of it for an Asterisk started otherwise.
    restrict(path)
    return round(wav_seconds(path), 2)


class StopError(DomainError):
    """A recording that cannot be stopped; raised with the status the API answers."""


async def stop(services: Services, call_uniqueid: str) -> bool:
    """Stop the quality recording of the call whose citizen channel has `call_uniqueid`;
    False when it has none (or it was never started). Raises StopError when the exchange
    cannot be asked."""
    async with services.sessions() as session:
        recording = await session.scalar(
            select(QuestionRecording.id).where(
                QuestionRecording.call_uniqueid == call_uniqueid[:64],
                QuestionRecording.kind == KIND,
            )
        )
    if recording is None:
        return False
    ami = services.ami
    if ami is None or not ami.connected:
        raise StopError("the exchange is not reachable (AMI down)", 503)
    try:
        # With several nodes everything is asked of the node that carries the caller's
        # channel: another node has no such channel (its refusal must not read as "not
        # recording"), and with that node's AMI down the call is unreachable, not ended.
        node = ami.carrying(call_uniqueid) if isinstance(ami, AmiNodes) else ami
        channels = await node.action_list({"Action": "CoreShowChannels"}, timeout=TIMEOUT)
        citizen = next(
            (
                c
                for c in channels
                if c.get("Event") == "CoreShowChannel" and c.get("Uniqueid") == call_uniqueid
            ),
            None,
        )
        if citizen is None:
            raise StopError("this call has ended", 409)
        await node.action(
            {"Action": "StopMixMonitor", "Channel": citizen["Channel"]}, timeout=TIMEOUT
        )
    except AmiNotConnected:
        raise StopError("the exchange is not reachable (AMI)", 503) from None
    except AmiTimeout:
        raise StopError("the exchange did not answer in time", 504) from None
    except AmiActionFailed:
        return False  # no MixMonitor on the channel: already stopped
    except AmiError as exc:
        raise StopError(f"stopping failed: {exc}", 502) from None
    return True


async def listed(services: Services, user: User) -> list[Kept]:
    """The quality recordings `user` may hear (their team's as its lead, every team's as a
    listener), newest first; the listing itself is audited (the screen and the API)."""
    teams = None if user.role in LISTENERS else [user.team_id]
    found = await kept(services, teams)
    async with services.sessions() as session:
        audit(session, user.name, "view", "quality recordings", "", f"{len(found)} listed")
        await session.commit()
    return found
