"""The waiting line's place announcements in Bereik's own voice.

app_queue says the place in line itself (on joining and every ``position_every_seconds``),
so the caller never leaves the line to hear it and cannot lose a turn meanwhile. It plays
its sound names (``queue-thereare``, the number as ``digits/<n>``, ``queue-callswaiting``
...) in the channel's language; the dialplan sets that to ``<language>_bereik`` before
``Queue()``, and this worker speaks those sounds into the instance's
``data/sounds/<language>_bereik`` (dialplan/render.py links the rest of Asterisk's data
there, and Asterisk falls back to the plain language for every other sound).

Made at start (they are few and fixed); a text changed here is spoken again at the next
start, because each file's text is kept beside it.
"""

from __future__ import annotations

import logging
import os
import wave
from pathlib import Path

from cti.services import Services
from cti.tts import TtsError

log = logging.getLogger("bereik.queue")

# app_queue's sound names -> what is said. Numbers up to the highest announce-position-limit
# (queue.position_limit, at most 20); above the limit app_queue says "more than <limit>".
LIMIT = 20
TEXTS = {
    "nl": {
        "queue-youarenext": "U bent de volgende.",
        "queue-thereare": "U bent nummer",
        "queue-callswaiting": "in de wachtrij.",
        "queue-quantity1": "Er wachten meer dan",
        "queue-quantity2": "bellers voor u.",
    },
    "en": {
        "queue-youarenext": "You are next.",
        "queue-thereare": "You are number",
        "queue-callswaiting": "in the queue.",
        "queue-quantity1": "There are more than",
        "queue-quantity2": "callers ahead of you.",
    },
}


# app_queue plays its "thank you" after each place, and an empty setting keeps its default;
# a caller whose turn comes while a sound plays waits for its end, so it says nothing.
SILENT = ("queue-thankyou",)


def sounds(language: str) -> dict[str, str]:
    """Sound name (relative to the language directory) -> text."""
    numbers = {f"digits/{n}": str(n) for n in range(0, LIMIT + 1)}
    return {**TEXTS[language], **numbers}


async def make(services: Services) -> None:
    """Speak every sound whose text changed or is missing."""
    language = services.config.exchange.language
    directory = services.instance_dir / "data" / "sounds" / f"{language}_bereik"
    made = failed = 0
    for name in SILENT:
        _silence(directory / f"{name}.wav")
    for name, text in sounds(language).items():
        wav = directory / f"{name}.wav"
        said = wav.with_suffix(".txt")
        if wav.exists() and said.exists() and said.read_text() == text:
            continue
        wav.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            await services.tts.synthesize(text, wav, language)
        except TtsError as exc:
            failed += 1
            log.error("waiting-line sound %s not made: %s", name, exc)
            continue
        fd = os.open(said, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        made += 1
    log.info("waiting-line sounds (%s_bereik): %d made, %d failed", language, made, failed)


def _silence(wav: Path) -> None:
    """A twentieth of a second of silence, 8 kHz mono 16-bit like every prompt."""
    if wav.exists():
        return
    wav.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(wav, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 400)
