"""A nearly full disk: on /metrics, and no recording started (the caller hears why)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agi.handlers.question import record_question
from cti.health import disk_low, watch_disk
from cti.services import Services
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services


def config(minimum_mb: int) -> Config:
    return Config.model_validate({**TWO_TEAMS, "server": {"disk_free_mb": minimum_mb}})


@pytest.fixture
async def full(tmp_path: Path) -> AsyncIterator[Services]:
    """An instance directory on a disk with less free than wanted (a petabyte)."""
    async with memory_services(config(10**9), tmp_path / "instance") as services:
        yield services


class Channel:
    """The AGI commands a handler sends, kept; what Asterisk would answer: nothing."""

    def __init__(self) -> None:
        self.streamed: list[str] = []
        self.commands: list[tuple[Any, ...]] = []
        self.log = logging.getLogger("test.channel")
        self.env = SimpleNamespace(uniqueid="1.0")

    async def stream_file(self, path: str, keys: str) -> str:
        self.streamed.append(path)
        return ""

    async def command(self, *args: Any, **_: Any) -> Any:
        self.commands.append(args)
        return SimpleNamespace(extra={})

    async def exec(self, *args: Any) -> None:
        self.commands.append(("EXEC", *args))


def spoken(services: Services, text: str) -> str:
    """The prompt file of `text` made beforehand (as the start-up warm-up does), so no
    speech engine is needed here; its path as Asterisk sees it."""
    language = services.config.exchange.language
    digest = hashlib.sha256(f"{language}\0{text}".encode()).hexdigest()[:24]
    wav = services.sounds_dir / "prompts" / f"{digest}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav.write_bytes(b"RIFF")
    return services.asterisk_path(wav.with_suffix(""))


async def test_a_full_disk_refuses_the_question_recording_with_a_spoken_apology(
    full: Services,
) -> None:
    apology = spoken(full, full.config.question_recording.no_room)
    channel = Channel()
    assert disk_low(full)
    assert await record_question(channel, full) is False  # type: ignore[arg-type]
    assert channel.streamed == [apology]
    assert not [c for c in channel.commands if c and c[0] == "RECORD FILE"]
    skipped = full.metrics.registry.get_sample_value(
        "bereik_question_recordings_total", {"result": "skipped"}
    )
    assert skipped == 1


async def test_with_room_the_question_is_recorded(tmp_path: Path) -> None:
    async with memory_services(config(0), tmp_path / "instance") as services:
        assert not disk_low(services)
        invitation = spoken(services, services.config.question_recording.prompt)
        channel = Channel()
        await record_question(channel, services)  # type: ignore[arg-type]
    assert channel.streamed == [invitation]
    assert [c[0] for c in channel.commands][:1] == ["RECORD FILE"]


async def test_the_free_space_and_its_minimum_are_on_metrics(full: Services) -> None:
    watcher = asyncio.create_task(watch_disk(full))
    try:
        for _ in range(100):
            if full.metrics.registry.get_sample_value("bereik_disk_free_bytes"):
                break
            await asyncio.sleep(0.01)
    finally:
        watcher.cancel()
    free = full.metrics.registry.get_sample_value("bereik_disk_free_bytes")
    minimum = full.metrics.registry.get_sample_value("bereik_disk_free_minimum_bytes")
    assert free is not None and 0 < free < (minimum or 0)
    assert minimum == 10**9 * 1024 * 1024
