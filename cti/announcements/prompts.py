"""Spoken prompts from text: synthesized once, cached by content, played by path.

Every sentence a caller hears (menu, closed message, "we call you back") is text in the
configuration or the code; the audio is made on first use and kept under the instance's
sounds directory, so no one ever records a tape and a changed text is live at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import time
import wave
from pathlib import Path

from cti.services import Services

_locks: dict[str, asyncio.Lock] = {}
# When each cached prompt was last marked as used (its mtime set to now), so the sweeper
# (cti/announcements/sweeper.py) only removes sentences nobody hears any more.
_touched: dict[str, float] = {}
TOUCH_EVERY = 24 * 3600


async def prompt(services: Services, text: str, language: str | None = None) -> str:
    """The path (as Asterisk sees it, without extension) of `text` spoken."""
    language = language or services.config.exchange.language
    digest = hashlib.sha256(f"{language}\0{text}".encode()).hexdigest()[:24]
    wav = services.sounds_dir / "prompts" / f"{digest}.wav"
    if not wav.exists():
        lock = _locks.setdefault(digest, asyncio.Lock())
        try:
            async with lock:
                if not wav.exists():
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    await services.tts.synthesize(text, wav, language)
        finally:
            # A lock only matters while its file is being made; keeping one per text ever
            # spoken (every repeat caller's date sentence) would grow without bound.
            if not lock.locked() and _locks.get(digest) is lock:
                del _locks[digest]
    now = time.time()
    if now - _touched.get(digest, 0.0) > TOUCH_EVERY:
        with contextlib.suppress(FileNotFoundError):
            os.utime(wav)
        _touched[digest] = now
    return services.asterisk_path(wav.with_suffix(""))


def prompt_file(services: Services, asterisk_path: str) -> Path:
    """The wav file on this machine behind a path returned by `prompt` (or any sound path
    under the instance directory: announcements, recordings)."""
    relative = asterisk_path.removeprefix(services.config.asterisk.instance_dir).lstrip("/")
    return services.instance_dir / f"{relative}.wav"


def audio_seconds(services: Services, asterisk_path: str) -> float:
    """How long a sound Bereik made plays; 0.0 for one it cannot read (a system sound).

    The FastAGI channel waits this long (plus its command timeout) for a prompt's answer.
    Every file Bereik writes has a name of its own (prompts by content hash, announcements
    and recordings by a fresh token), so a length once read stays true for that path.
    """
    try:
        return _wav_seconds(str(prompt_file(services, asterisk_path)))
    except (OSError, EOFError, wave.Error):
        return 0.0  # not cached: the file may yet be written


@functools.lru_cache(maxsize=4096)
def _wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as audio:
        return audio.getnframes() / float(audio.getframerate())
