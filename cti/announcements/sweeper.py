"""A worker that removes audio nobody will play again, so the sounds directory stays small.

* announcements/: a wav no announcement row refers to (a replaced text, a preview in the
  web screen, a phone recording the operator did not keep) once it is a day old. A day,
  so a call that just started playing a replaced file, or a preview being listened to, is
  never cut off.
* prompts/joined/: sentences joined for one play (prompts.spoken) that a crashed process
  left behind, once a day old.
* prompts/: a cached sentence not made or used for 30 days (dated "we call you back
  before ..." sentences, old menu texts). It is synthesized again if it is ever needed.

Audio of ended and expired announcements is kept, so the screens let an operator listen
back, until the retention purge (cti/retention.py) deletes it with its row.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import select

from cti.announcements.prompts import JOINED
from cti.announcements.service import audio_dir
from cti.services import Services
from cti.store.faults import every
from cti.store.models import Announcement

log = logging.getLogger("bereik.announcements")

EVERY_SECONDS = 6 * 3600
ORPHAN_AGE = 24 * 3600
PROMPT_AGE = 30 * 24 * 3600


def _old(path: Path, age: float, now: float) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    # atime is unreliable (noatime mounts); prompts.prompt() sets mtime when it is used.
    return now - max(stat.st_mtime, stat.st_atime) > age


async def sweep(services: Services, now: float | None = None) -> int:
    """Remove unreferenced announcement audio and stale prompts; return how many."""
    now = time.time() if now is None else now
    async with services.sessions() as session:
        referenced = set((await session.scalars(select(Announcement.audio))).all())
    removed = 0
    for wav in audio_dir(services).glob("*.wav"):
        if wav.stem not in referenced and _old(wav, ORPHAN_AGE, now):
            wav.unlink(missing_ok=True)
            removed += 1
    for wav in (services.sounds_dir / "prompts").glob("*.wav"):
        if _old(wav, PROMPT_AGE, now):
            wav.unlink(missing_ok=True)
            removed += 1
    # A joined prompt is removed after its one play; one left here is a crashed process's.
    for wav in (services.sounds_dir / "prompts" / JOINED).glob("*.wav"):
        if _old(wav, ORPHAN_AGE, now):
            wav.unlink(missing_ok=True)
            removed += 1
    return removed


async def run(services: Services) -> None:
    # By the store's policy (cti/store/faults.py): a locked or unreachable database is
    # waited out (one was at start-up, while the other workers opened their connections),
    # not a crash of the part.
    async def once() -> None:
        try:
            removed = await sweep(services)
            if removed:
                log.info("removed %d unused audio files", removed)
        except OSError as exc:
            log.error("cannot clean the sounds directory: %s", exc)

    await every(EVERY_SECONDS, once, what="the audio files' sweep", logger=log)
