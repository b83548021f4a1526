"""A caller's number read back in one AGI command: the sentence before it, its digits and
the sentence after it (each a cached prompt) played as Asterisk's `&` list, the callback
offer with its key in one Read(), the goodbye in one Playback(); nothing written for it.
(`spoken`, prompts joined into one file for one STREAM FILE, is the virtual hold's.)"""

from __future__ import annotations

import logging
import os
import stat
import time
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agi.handlers.hopper import (
    CHOICE_MS,
    CHOICE_VARIABLE,
    _confirmed_number,
    digit_prompts,
    say,
)
from agi.protocol import AgiCommandFailed
from cti.announcements.prompts import JOINED, join_wavs, prompt, prompt_file, spoken
from cti.announcements.sweeper import sweep
from cti.services import Services
from cti.tts import SAMPLE_RATE
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services


class Tts:
    """A voice without a speech engine: each text is a tone as long as the text, its own
    sample value, so a joined sound shows which prompts are in it and in what order."""

    async def synthesize(self, text: str, out_wav: Path, language: str = "nl") -> None:
        sample = (sum(text.encode()) % 30000 + 1).to_bytes(2, "little", signed=True)
        with wave.open(str(out_wav), "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(SAMPLE_RATE)
            audio.writeframes(sample * 40 * len(text))


class Channel:
    """What Asterisk answers: Read() leaves `key` (or fails: the caller hung up), GET DATA
    returns `keyed`; every command is kept in order."""

    def __init__(self, key: str = "", keyed: str = "", fails: bool = False) -> None:
        self.key = key
        self.keyed = keyed
        self.fails = fails
        self.reads: list[tuple[list[str], int, str]] = []
        self.playbacks: list[list[str]] = []
        self.commands: list[str] = []
        self.log = logging.getLogger("test.channel")

    async def read_key(self, sounds: Sequence[str], timeout_ms: int, variable: str) -> str:
        self.commands.append("Read")
        self.reads.append((list(sounds), timeout_ms, variable))
        if self.fails:
            raise AgiCommandFailed("EXEC returned result=-1")
        return self.key

    async def playback(self, sounds: Sequence[str]) -> None:
        self.commands.append("Playback")
        self.playbacks.append(list(sounds))
        if self.fails:
            raise AgiCommandFailed("EXEC returned result=-1")

    async def get_data(self, sound: str, timeout_ms: int, max_digits: int) -> str:
        self.commands.append("GET DATA")
        return self.keyed

    async def command(self, name: str, *args: Any, **_: Any) -> Any:
        self.commands.append(name)
        return SimpleNamespace(result="6", extra={})


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as audio:
        return audio.readframes(audio.getnframes())


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(Config.model_validate(TWO_TEAMS), tmp_path / "instance") as made:
        made.tts = Tts()  # type: ignore[assignment]
        yield made


async def parts(services: Services, texts: list[str]) -> bytes:
    return b"".join([frames(prompt_file(services, await prompt(services, t))) for t in texts])


async def prompts(services: Services, texts: list[str]) -> list[str]:
    return [await prompt(services, text) for text in texts]


def joined_left(services: Services) -> list[Path]:
    return list((services.sounds_dir / "prompts" / JOINED).glob("*"))


OFFER_END = "Toets 1 om dit te bevestigen, of toets 2 om een ander nummer in te toetsen."


@pytest.mark.parametrize("key", ["1", "", "5", "#"])
async def test_the_callback_offer_reads_the_caller_id_back_and_takes_the_answer_in_one_read(
    services: Services, key: str
) -> None:
    """Any answer but 2, and silence, confirm the number the caller was told."""
    channel = Channel(key=key)
    number = await _confirmed_number(channel, services, "Wij bellen terug", "0612345678", False)  # type: ignore[arg-type]
    assert number == "0612345678"
    texts = ["Wij bellen terug op het nummer", *digit_prompts(number), OFFER_END]
    assert channel.reads == [(await prompts(services, texts), CHOICE_MS, CHOICE_VARIABLE)]
    assert channel.commands == ["Read"]
    assert joined_left(services) == []


async def test_two_at_the_offer_asks_for_another_number(services: Services) -> None:
    channel = Channel(key="2", keyed="0701234567")
    number = await _confirmed_number(channel, services, "Wij bellen terug", "0612345678", False)  # type: ignore[arg-type]
    assert number == "0701234567"
    assert channel.commands == ["Read", "GET DATA"]


async def test_an_offer_that_cannot_play_checks_the_caller_is_there_and_keeps_the_number(
    services: Services,
) -> None:
    channel = Channel(fails=True)
    number = await _confirmed_number(channel, services, "Wij bellen terug", "0612345678", False)  # type: ignore[arg-type]
    assert number == "0612345678"
    assert channel.commands == ["Read", "CHANNEL STATUS"]  # raises AgiHangup for one who left


async def test_the_goodbye_and_the_number_are_one_playback_of_the_cached_prompts(
    services: Services,
) -> None:
    texts = ["Wij bellen u terug op", *digit_prompts("+31 70 123"), "Tot ziens."]
    channel = Channel()
    await say(channel, services, texts)  # type: ignore[arg-type]
    assert channel.playbacks == [await prompts(services, texts)]
    # Each part is the prompt cache's own file; none speaks the caller's number whole.
    assert all(prompt_file(services, sound).exists() for sound in channel.playbacks[0])
    assert joined_left(services) == []


async def test_joined_prompts_are_one_sound_in_order_readable_by_no_one_else_and_removed(
    services: Services,
) -> None:
    texts = ["Wij bellen u terug op", *digit_prompts("+31 70 123"), "Tot ziens."]
    async with spoken(services, texts) as sound:
        path = prompt_file(services, sound)
        assert frames(path) == await parts(services, texts)
        # It speaks a caller's number: 0640, or 0600 under serve's umask.
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0
    assert joined_left(services) == []


async def test_a_single_sentence_is_its_cached_prompt_not_a_copy(services: Services) -> None:
    async with spoken(services, ["Tot ziens."]) as sound:
        assert sound == await prompt(services, "Tot ziens.")


def test_an_unreadable_part_is_left_out_and_the_rest_joined(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    with wave.open(str(good), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(SAMPLE_RATE)
        audio.writeframes(b"\1\0" * 100)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF")
    out = tmp_path / "out.wav"
    join_wavs([good, broken, good], out)
    assert frames(out) == b"\1\0" * 200


async def test_a_joined_file_left_by_a_crash_is_swept_after_a_day(services: Services) -> None:
    folder = services.sounds_dir / "prompts" / JOINED
    folder.mkdir(parents=True)
    old, new = folder / "old.wav", folder / "new.wav"
    for path in (old, new):
        path.write_bytes(b"RIFF")
    now = time.time()
    os.utime(old, (now - 25 * 3600, now - 25 * 3600))
    assert await sweep(services, now) == 1
    assert joined_left(services) == [new]
