"""The caller's question in their own words, recorded right after a confirmed callback.

Every path that confirms a callback ends here: the team's and the KCC's callback offer and
the virtual hold (through ``agi.handlers.hopper.ask_callback_number``), and the after-hours
request (agi/handlers/ivr.py). The caller hears the invitation, a beep, and speaks up to
``question_recording.max_seconds``; ``#`` or a silence of ``silence_seconds`` ends it, and
``#`` during the invitation skips it. Hanging up while speaking keeps what was said: the
callback was already confirmed, and the question is what the team needs.
"""

from __future__ import annotations

import contextlib
import secrets

from agi.protocol import AgiCommandFailed, AgiHangup
from agi.server import AgiChannel
from cti.announcements.prompts import prompt
from cti.health import disk_low
from cti.services import Services
from cti.tts import TtsError
from cti.voice import service

SKIP_KEY = "#"


async def record_question(channel: AgiChannel, services: Services) -> bool:
    """Offer to record the question; True when one was kept.

    Never raises for a hang-up: the callback is confirmed before this, and the caller of
    this function makes the hopper whatever happens here (the next command after a
    hang-up raises AgiHangup there)."""
    if not services.config.question_recording.enabled:
        return False
    try:
        return await _record(channel, services)
    except AgiHangup:
        channel.log.info("caller hung up before recording a question")
        return False


async def _record(channel: AgiChannel, services: Services) -> bool:
    settings = services.config.question_recording
    metrics = services.metrics
    if disk_low(services):
        # A recording that fails halfway is worse than none: the caller hears why.
        channel.log.warning("question not recorded: the disk is nearly full")
        metrics.question_recorded("skipped")
        with contextlib.suppress(AgiCommandFailed, TtsError):
            await channel.stream_file(await prompt(services, settings.no_room), "")
        return False
    try:
        key = await channel.stream_file(await prompt(services, settings.prompt), SKIP_KEY)
    except AgiCommandFailed:
        await channel.command("CHANNEL STATUS")  # AgiHangup when the caller left
        key = ""
    if key == SKIP_KEY:
        metrics.question_recorded("skipped")
        return False
    directory = service.recordings_dir(services)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"question-{secrets.token_hex(8)}"
    try:
        await channel.command(
            "RECORD FILE",
            services.asterisk_path(directory / name),
            "wav",
            SKIP_KEY,
            settings.max_seconds * 1000,
            "BEEP",
            f"s={settings.silence_seconds}",
            timeout=settings.max_seconds + 30,
        )
    except AgiCommandFailed:
        # result=-1: the caller hung up while speaking (or the write failed): keep what is
        # on disk, if anything.
        channel.log.info("question recording ended by a hang-up")
    kept = await service.keep(services, channel.env.uniqueid, directory / f"{name}.wav")
    metrics.question_recorded("recorded" if kept else "skipped")
    if kept is None:
        return False
    channel.log.info("question recorded: %.1f s", kept.seconds)
    # For monitoring and the end-to-end tests: how long, never what.
    try:
        await channel.exec("UserEvent", f"BereikQuestion,Seconds: {kept.seconds}")
    except AgiCommandFailed:
        pass
    return True
