"""Announcements: which ones a caller hears now, and making, changing and ending them.

An announcement is text (spoken by the TTS engine) or a recording (by phone or upload),
with a kind, a scope and a validity window. Selection happens per call from the database,
so a new one is live for the next caller and an expired one simply stops being chosen:
nothing is ever reloaded in Asterisk.

Play order within a scope: outage, then closure, then news; within a kind the higher
priority first, then the newest.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.audit import audit
from cti.errors import DomainError, Unprocessable
from cti.services import Services
from cti.store.models import Announcement
from cti.tts import TtsError, convert_upload
from dialplan.config import Config, MenuOption

KINDS = ("outage", "closure", "news")
SOURCES = ("tts", "phone", "upload")
MAX_TEXT = 1000  # about a minute of speech: longer and callers hang up before the menu
MAX_PRIORITY = 100
_SCOPE = re.compile(r"^(all|menu:[0-9*#](\.[0-9*#])*|team:[a-z][a-z0-9_]{0,31})$")
_KIND_ORDER = case({"outage": 0, "closure": 1, "news": 2}, value=Announcement.kind, else_=3)


class AnnouncementError(DomainError):
    """Refused input or failed audio; the message is shown to the operator as is (a 400)."""


class SpeechFailed(AnnouncementError, Unprocessable):
    """The text is valid, the speech engine could not make it (a 422)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def audio_dir(services: Services) -> Path:
    return services.sounds_dir / "announcements"


def audio_file(services: Services, audio: str) -> Path:
    """The wav on this machine for an announcement's `audio` name."""
    return audio_dir(services) / f"{audio}.wav"


def asterisk_audio(services: Services, audio: str) -> str:
    """The same file as Asterisk plays it (no extension)."""
    return services.asterisk_path(audio_dir(services) / audio)


# -- validation (pure) --------------------------------------------------------------------


def menu_option(config: Config, path: str) -> MenuOption | None:
    """The option behind a key path such as "2" or "2.1", or None."""
    options = config.menu.options
    found: MenuOption | None = None
    for key in path.split("."):
        found = next((o for o in options if o.key == key), None)
        if found is None:
            return None
        options = found.submenu
    return found


def check_scope(config: Config, scope: str) -> str:
    scope = scope.strip() or "all"
    if not _SCOPE.match(scope):
        raise AnnouncementError(
            f"scope {scope!r} is not valid: use all, menu:<key> (menu:2.1 for a submenu) "
            "or team:<team id>"
        )
    kind, _, rest = scope.partition(":")
    if kind == "menu" and menu_option(config, rest) is None:
        raise AnnouncementError(f"scope {scope!r}: the menu has no option {rest}")
    # team:kcc is for the KCC's waiting line (cti/queue), heard while in line.
    if kind == "team" and rest not in {team.id for team in config.teams} | {"kcc"}:
        raise AnnouncementError(f"scope {scope!r}: there is no team {rest!r}")
    return scope


def check_text(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise AnnouncementError("the text is empty")
    if len(text) > MAX_TEXT:
        raise AnnouncementError(f"the text is {len(text)} characters long; at most {MAX_TEXT}")
    return text


def check_window(valid_from: datetime, valid_until: datetime | None) -> None:
    for name, value in (("valid_from", valid_from), ("valid_until", valid_until)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise AnnouncementError(f"{name} needs a timezone (e.g. 2026-12-01T17:00+01:00)")
    if valid_until is not None and valid_until <= valid_from:
        raise AnnouncementError("valid_until must be after valid_from")


def is_active(announcement: Announcement, now: datetime) -> bool:
    """Whether a caller would hear it at `now` (the same rule as the query below)."""
    return (
        announcement.ended_at is None
        and bool(announcement.audio)
        and announcement.valid_from <= now
        and (announcement.valid_until is None or now < announcement.valid_until)
    )


@dataclass(frozen=True)
class Draft:
    """What an operator asks for; checked by `create`."""

    kind: str
    text: str = ""
    scope: str = "all"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    priority: int = 0
    author: str = ""


def _checked(config: Config, draft: Draft, needs_text: bool) -> Draft:
    if draft.kind not in KINDS:
        raise AnnouncementError(f"kind {draft.kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(draft.priority, int) or not 0 <= draft.priority <= MAX_PRIORITY:
        raise AnnouncementError(f"priority must be a whole number from 0 to {MAX_PRIORITY}")
    text = check_text(draft.text) if needs_text or draft.text.strip() else ""
    valid_from = draft.valid_from or utcnow()
    check_window(valid_from, draft.valid_until)
    return Draft(
        kind=draft.kind,
        text=text,
        scope=check_scope(config, draft.scope),
        valid_from=valid_from,
        valid_until=draft.valid_until,
        priority=draft.priority,
        author=draft.author[:64],
    )


# -- selection ----------------------------------------------------------------------------


async def active(
    session: AsyncSession, scope: str | None, now: datetime | None = None
) -> list[Announcement]:
    """Active announcements of one scope (all scopes when None), in play order."""
    now = now or utcnow()
    query = select(Announcement).where(
        *_IN_PLAY,
        Announcement.valid_from <= now,
        or_(Announcement.valid_until.is_(None), Announcement.valid_until > now),
    )
    if scope is not None:
        query = query.where(Announcement.scope == scope)
    return list((await session.scalars(query.order_by(*_PLAY_ORDER))).all())


# Not ended and with audio, and the order they play in: for active() and the call path's
# cached list alike.
_IN_PLAY = (Announcement.ended_at.is_(None), Announcement.audio != "")
_PLAY_ORDER = (_KIND_ORDER, Announcement.priority.desc(), Announcement.created_at.desc())


@dataclass(frozen=True)
class Playable:
    """What the call path needs of an announcement that has not ended."""

    id: int
    scope: str
    audio: str
    valid_from: datetime
    valid_until: datetime | None

    def active(self, now: datetime) -> bool:
        return self.valid_from <= now and (self.valid_until is None or self.valid_until > now)


def _not_ended(conn: Connection, *, previous: tuple[Playable, ...] | None) -> tuple[Playable, ...]:
    """Every announcement with audio that has not ended, in play order (active() without
    the clock, so the list stays right while it is cached)."""
    query = (
        select(
            Announcement.id,
            Announcement.scope,
            Announcement.audio,
            Announcement.valid_from,
            Announcement.valid_until,
        )
        .where(*_IN_PLAY)
        .order_by(*_PLAY_ORDER)
    )
    return tuple(Playable(*row) for row in conn.execute(query).all())


async def playable(services: Services, scope: str) -> list[tuple[int, str]]:
    """(id, Asterisk path) of each active announcement of `scope` whose audio exists.

    Asked on every call: answered from the process's cache (cti/store/cache.py)."""
    found = await services.caches.get(services.writer, "announcements", _not_ended)
    now = utcnow()
    return [
        (a.id, asterisk_audio(services, a.audio))
        for a in found
        if a.scope == scope and a.active(now) and audio_file(services, a.audio).exists()
    ]


async def announcements_for(services: Services, scope: str) -> list[str]:
    """Paths to play (STREAM FILE) for `scope`: "all", "menu:<key>" or "team:<id>".

    For other handlers, e.g. the team handler plays `team:<id>` before ringing.
    """
    return [path for _, path in await playable(services, scope)]


# -- changes ------------------------------------------------------------------------------


def _new_audio_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def speak(services: Services, text: str) -> str:
    """Synthesize `text` to a new audio file; return its name. Raises AnnouncementError."""
    directory = audio_dir(services)
    directory.mkdir(parents=True, exist_ok=True)
    name = _new_audio_name("tts")
    try:
        await services.tts.synthesize(
            text, audio_file(services, name), services.config.exchange.language
        )
    except TtsError as exc:
        raise SpeechFailed(f"speech synthesis failed: {exc}") from None
    return name


async def import_audio(services: Services, upload: Path) -> str:
    """Convert an uploaded wav/mp3/ogg to a new audio file; return its name."""
    directory = audio_dir(services)
    directory.mkdir(parents=True, exist_ok=True)
    name = _new_audio_name("upload")
    try:
        await convert_upload(upload, audio_file(services, name))
    except TtsError as exc:
        raise AnnouncementError(str(exc)) from None
    return name


async def create(
    services: Services,
    draft: Draft,
    *,
    audio: str = "",
    source: str = "tts",
    upload: Path | None = None,
) -> Announcement:
    """Check, make the audio (unless given), store; live at once when valid_from <= now.

    `audio` is an existing file name in the announcements directory (a phone recording);
    `upload` a wav/mp3/ogg file to convert; neither: the text is spoken by the TTS engine.
    """
    has_audio = bool(audio) or upload is not None
    draft = _checked(services.config, draft, needs_text=not has_audio)
    if source not in SOURCES:
        raise AnnouncementError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    if upload is not None:
        audio, source = await import_audio(services, upload), "upload"
    elif not audio:
        audio = await speak(services, draft.text)
    assert draft.valid_from is not None
    announcement = Announcement(
        text=draft.text,
        kind=draft.kind,
        scope=draft.scope,
        valid_from=draft.valid_from,
        valid_until=draft.valid_until,
        priority=draft.priority,
        author=draft.author,
        audio=audio,
        source=source,
    )
    async with services.sessions() as session:
        session.add(announcement)
        await session.flush()
        audit(
            session,
            actor=draft.author,
            action="create",
            object_type="announcement",
            object_id=announcement.id,
            detail=f"{draft.kind} {draft.scope} {source}",
        )
        await session.commit()
    return announcement


async def change_text(services: Services, announcement_id: int, text: str, actor: str) -> str:
    """New text and audio for one announcement; a failed synthesis keeps the old audio."""
    text = check_text(text)
    async with services.sessions() as session:
        found = await session.get(Announcement, announcement_id)
        if found is None:
            raise LookupError(announcement_id)
    audio = await speak(services, text)  # raises before anything changes
    async with services.sessions() as session:
        found = await session.get(Announcement, announcement_id)
        if found is None:
            raise LookupError(announcement_id)
        old = found.audio
        found.text, found.audio, found.source = text, audio, "tts"
        audit(
            session,
            actor=actor,
            action="update",
            object_type="announcement",
            object_id=announcement_id,
            detail="text",
        )
        await session.commit()
    if old and old != audio:
        # Calls playing the old file keep their open handle; new calls get the new one.
        audio_file(services, old).unlink(missing_ok=True)
    return audio


async def change_until(
    services: Services, announcement_id: int, valid_until: datetime | None, actor: str
) -> Announcement:
    """Extend or shorten an announcement (an outage that lasts longer); None: until ended."""
    async with services.sessions() as session:
        found = await session.get(Announcement, announcement_id)
        if found is None:
            raise LookupError(announcement_id)
        if found.ended_at is not None:
            raise AnnouncementError("this announcement has been ended; make a new one")
        check_window(found.valid_from, valid_until)
        found.valid_until = valid_until
        audit(
            session,
            actor=actor,
            action="update",
            object_type="announcement",
            object_id=announcement_id,
            detail=f"valid_until {valid_until.isoformat() if valid_until else 'none'}",
        )
        await session.commit()
        return found


async def end(services: Services, announcement_id: int, actor: str) -> Announcement:
    """Stop an announcement now; it stays in the list as ended (history)."""
    async with services.sessions() as session:
        found = await session.get(Announcement, announcement_id)
        if found is None:
            raise LookupError(announcement_id)
        if found.ended_at is None:
            found.ended_at = utcnow()
            audit(
                session,
                actor=actor,
                action="end",
                object_type="announcement",
                object_id=announcement_id,
            )
            await session.commit()
        return found


async def listing(
    services: Services, only_active: bool, now: datetime | None = None
) -> list[Announcement]:
    async with services.sessions() as session:
        if only_active:
            return await active(session, None, now)
        query = select(Announcement).order_by(Announcement.created_at.desc()).limit(500)
        return list((await session.scalars(query)).all())


def as_json(services: Services, a: Announcement, now: datetime | None = None) -> dict[str, object]:
    now = now or utcnow()
    return {
        "id": a.id,
        "text": a.text,
        "kind": a.kind,
        "scope": a.scope,
        "valid_from": a.valid_from.isoformat(),
        "valid_until": a.valid_until.isoformat() if a.valid_until else None,
        "priority": a.priority,
        "author": a.author,
        "source": a.source,
        "created_at": a.created_at.isoformat(),
        "ended_at": a.ended_at.isoformat() if a.ended_at else None,
        "active": is_active(a, now),
        "audio_url": f"/api/announcements/{a.id}/audio",
    }
