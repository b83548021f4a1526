"""Quality recordings in the end-to-end tests (tests/e2e/test_quality_recording*.py): the
settings that keep the consent question short, the length of a recorded file, the privacy
officer's `bereik privacy erase` as a separate process, and polling an async check."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.exchange import REPO
from tests.support.ivr import FAST_SPEECH

SETTINGS = (
    FAST_SPEECH
    + """
[quality_recording]
prompt = "Dit gesprek kan worden opgenomen. Toets 9 als u dat niet wilt."
refused = "Niet opgenomen."
answer_seconds = 1
"""
)


def soxi_seconds(path: str) -> float:
    """The length soxi reads from the file's header; 0 while MixMonitor has not closed it."""
    done = subprocess.run(["soxi", "-D", path], capture_output=True, text=True)
    return float(done.stdout) if done.returncode == 0 else 0.0


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an awaitable check every 0.2 s until it is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


def erase(config_path: Path, number: str) -> dict[str, int]:
    """The command as the privacy officer runs it, as a separate process; its counts."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bereik",
            "privacy",
            "erase",
            number,
            "--json",
            "--config",
            str(config_path),
            "--actor",
            "fg",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    counts: dict[str, int] = json.loads(done.stdout)
    return counts
