"""A caller's number read back in one AGI command: the sentence before it, its digits and
the sentence after it (each a cached prompt) joined into one sound for one STREAM FILE."""

from __future__ import annotations

import logging
import os
import stat
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agi.handlers.hopper import _confirmed_number, digit_prompts, say
from agi.protocol import AgiCommandFailed
from cti.announcements.prompts import JOINED, join_wavs, prompt, prompt_file
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
    """What Asterisk answers to STREAM FILE: `key` (or a failure); each sound's audio is
    read while it plays, since a joined sound is gone once the play is over."""

    def __init__(self, services: Services, key: str = "", fails: bool = False) -> None:
        self.services = services
        self.key = key
        self.fails = fails
        self.played: list[tuple[str, str]] = []
        self.audio: list[bytes] = []
        self.modes: list[int] = []
        self.commands: list[str] = []
        self.log = logging.getLogger("test.channel")

    async def stream_file(self, sound: str, escape: str = "") -> str:
        self.played.append((sound, escape))
        path = prompt_file(self.services, sound)
        self.audio.append(frames(path))
        self.modes.append(stat.S_IMODE(path.stat().st_mode))
        if self.fails:
            raise AgiCommandFailed("STREAM FILE returned result=-1")
        return self.key

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


def joined_left(services: Services) -> list[Path]:
    return list((services.sounds_dir / "prompts" / JOINED).glob("*"))


async def test_a_number_and_its_sentences_play_as_one_stream_file_in_order(
    services: Services,
) -> None:
    texts = ["Wij bellen u terug op", *digit_prompts("+31 70 123"), "Tot ziens."]
    channel = Channel(services)
    assert await say(channel, services, texts, escape="12") == ""  # type: ignore[arg-type]
    assert len(channel.played) == 1 and channel.played[0][1] == "12"
    assert channel.audio == [await parts(services, texts)]
    # It speaks a caller's number: never readable by others, and gone after its play.
    # Never readable by others (it speaks the number); 0640, or 0600 under serve's umask.
    assert len(channel.modes) == 1 and channel.modes[0] & 0o007 == 0, channel.modes
    assert joined_left(services) == []


async def test_the_callers_key_ends_the_read_back_and_is_returned(services: Services) -> None:
    channel = Channel(services, key="2")
    said = ["Op het nummer", *digit_prompts("0612345678"), "Toets 1 of 2."]
    assert await say(channel, services, said, escape="12") == "2"  # type: ignore[arg-type]
    assert len(channel.played) == 1


async def test_the_callback_offer_reads_the_caller_id_back_in_one_command(
    services: Services,
) -> None:
    channel = Channel(services, key="1")
    number = await _confirmed_number(channel, services, "Wij bellen terug", "0612345678", False)  # type: ignore[arg-type]
    assert number == "0612345678"
    assert [escape for _, escape in channel.played] == ["12"]
    offer = await parts(services, ["Wij bellen terug op het nummer", *digit_prompts(number)])
    assert channel.audio[0].startswith(offer)


async def test_a_read_back_that_cannot_play_is_skipped_once_the_caller_is_known_present(
    services: Services,
) -> None:
    channel = Channel(services, fails=True)
    assert await say(channel, services, ["Tot ziens", "1"], escape="") == ""  # type: ignore[arg-type]
    assert len(channel.played) == 1
    assert channel.commands == ["CHANNEL STATUS"]  # raises AgiHangup for a caller who left
    assert joined_left(services) == []


async def test_when_no_joined_file_can_be_written_the_prompts_play_one_by_one(
    services: Services,
) -> None:
    folder = services.sounds_dir / "prompts" / JOINED
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"")  # a file where the folder should be: the write fails
    texts = ["Tot ziens", "0", "6"]
    channel = Channel(services, key="6")
    assert await say(channel, services, texts, escape="6") == "6"  # type: ignore[arg-type]
    assert [sound for sound, _ in channel.played] == [await prompt(services, "Tot ziens")]


async def test_a_single_sentence_is_its_cached_prompt_not_a_copy(services: Services) -> None:
    channel = Channel(services)
    await say(channel, services, ["Tot ziens."], escape="")  # type: ignore[arg-type]
    assert [sound for sound, _ in channel.played] == [await prompt(services, "Tot ziens.")]


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
