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
import logging
import os
import secrets
import time
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from cti.services import Services
from cti.tts import SAMPLE_RATE

_locks: dict[str, asyncio.Lock] = {}
# When each cached prompt (by its path) was last marked as used (its mtime set to now), so
# the sweeper (cti/announcements/sweeper.py) only removes sentences nobody hears any more.
_touched: dict[str, float] = {}
TOUCH_EVERY = 24 * 3600
# When each prompt file was last found (or made): within SEEN_SECONDS it is not looked for.
_seen: dict[str, float] = {}
SEEN_SECONDS = 60.0
# Where `spoken` writes the sentences it joins for one play; the sweeper
# (cti/announcements/sweeper.py) removes what a crashed process left there after a day.
JOINED = "joined"

log = logging.getLogger("bereik.announcements")


async def prompt(services: Services, text: str, language: str | None = None) -> str:
    """The path (as Asterisk sees it, without extension) of `text` spoken."""
    return services.asterisk_path((await _prompt_wav(services, text, language)).with_suffix(""))


@functools.lru_cache(maxsize=4096)
def _prompt_path(sounds_dir: Path, language: str, text: str) -> Path:
    """Where the prompt of `text` is kept: named by the hash of its language and text."""
    digest = hashlib.sha256(f"{language}\0{text}".encode()).hexdigest()[:24]
    return sounds_dir / "prompts" / f"{digest}.wav"


async def _prompt_wav(services: Services, text: str, language: str | None) -> Path:
    language = language or services.config.exchange.language
    wav = _prompt_path(services.sounds_dir, language, text)
    key = str(wav)
    now = time.time()
    # Seen a moment ago: no stat. A read-back plays a dozen prompts, twice a call, and a
    # stat and a hash for each were a tenth of the hopper handler's CPU; a prompt file
    # someone removed is made again a minute later at most.
    if now - _seen.get(key, 0.0) > SEEN_SECONDS and not wav.exists():
        digest = wav.stem
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
    if now - _touched.get(key, 0.0) > TOUCH_EVERY:
        with contextlib.suppress(FileNotFoundError):
            os.utime(wav)
        _touched[key] = now
    _seen[key] = now
    return wav


@contextlib.asynccontextmanager
async def spoken(
    services: Services, texts: Sequence[str], language: str | None = None
) -> AsyncIterator[str]:
    """`texts` spoken one after the other as one sound, for one STREAM FILE: a sentence
    and a number read back digit by digit (each a cached `prompt`) cost one AGI round trip
    instead of one per part, and a key interrupts the whole as it did each part.

    The joined file is made for this play and removed after it: it speaks a caller's
    number, which the prompt cache must not keep for its 30 days. A single text is its
    cached prompt as it is. A part whose audio cannot be read is left out (logged), as a
    part that could not be played was skipped; OSError if the joined file cannot be
    written."""
    parts = [await _prompt_wav(services, text, language) for text in texts]
    if len(parts) == 1:
        yield services.asterisk_path(parts[0].with_suffix(""))
        return
    folder = services.sounds_dir / "prompts" / JOINED
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / f"{secrets.token_hex(12)}.wav"
    try:
        join_wavs(parts, wav)
        yield services.asterisk_path(wav.with_suffix(""))
    finally:
        wav.unlink(missing_ok=True)


def join_wavs(parts: Sequence[Path], out: Path) -> None:
    """Write the audio of `parts` one after the other to `out` (a new file, 0640: never
    readable by others, it may speak a caller's number). Every part Bereik synthesizes has
    the one Asterisk format (cti.tts); a part in another format or unreadable is left out."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as joined:
        params: tuple[int, int, int] | None = None
        for part in parts:
            try:
                these, frames = _audio(str(part))
                if params is None:
                    params = these
                    joined.setnchannels(these[0])
                    joined.setsampwidth(these[1])
                    joined.setframerate(these[2])
                elif these != params:
                    raise wave.Error(f"format {these}, not {params}")
                joined.writeframes(frames)
            except (OSError, EOFError, wave.Error) as exc:
                log.warning("left out of a joined prompt: %s (%s)", part, exc)
        if params is None:
            # Nothing readable: still a valid (empty) wav, so the play fails no differently.
            joined.setnchannels(1)
            joined.setsampwidth(2)
            joined.setframerate(SAMPLE_RATE)


@functools.lru_cache(maxsize=64)
def _audio(path: str) -> tuple[tuple[int, int, int], bytes]:
    """A cached prompt's format and frames, read once: a prompt's file is named by the
    hash of its text and never changes, and the same eleven digits and few sentences are
    joined on every read-back (a failed read is not kept: it raises)."""
    with wave.open(path, "rb") as audio:
        params = (audio.getnchannels(), audio.getsampwidth(), audio.getframerate())
        return params, audio.readframes(audio.getnframes())


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
