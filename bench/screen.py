"""Event to screen: from Asterisk's AMI event to the agent's browser stream (SSE).

An agent (extension 2001, the bench's KCC phone) has `/events` open, as the agent screen
does. Callers come in on 14070 at a rate that keeps about 50 calls in progress; each call
rings 2001, and Asterisk's `DialBegin` for it carries its own `Timestamp` (manager.conf
`timestampevents`). The latency of one call is the time the `ringing` message for that
channel reached the client, less that Timestamp: AMI transport, serve's event bus and the
live-call subscriber, and the SSE write, all on this machine's one clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from bench import stats
from bench.exchange import Exchange


class Bench(Protocol):
    """What the screen measurement needs of the bench (bench.run.Bench)."""

    exchange: Exchange

    async def sample_in_progress(
        self, result: ScreenResult, rate: float, seconds: float, hold_ms: int
    ) -> None: ...


AGENT = "2001"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class ScreenResult:
    in_progress: int = 0
    placed: int = 0
    matched: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def p50(self) -> float | None:
        return stats.percentile(self.latencies_ms, 0.5)

    @property
    def p99(self) -> float | None:
        return stats.percentile(self.latencies_ms, 0.99)


def agent_token(bench: Bench) -> str:
    """A user for extension 2001 with an API token, made with the real `bereik users` CLI."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bereik",
            "users",
            "add",
            "bench-agent",
            "--role",
            "agent",
            "--extension",
            AGENT,
            "--token",
            "--password-stdin",
            "--config",
            str(bench.exchange.config_path),
        ],
        input="bench-wachtwoord-14070\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
        timeout=60,
        check=False,
    )
    tokens = [word for word in result.stdout.split() if len(word) >= 32]
    if result.returncode != 0 or not tokens:
        raise RuntimeError(f"bereik users add failed: {result.stdout}{result.stderr}")
    return tokens[-1]


async def measure(bench: Bench, rate: float, seconds: float, hold_ms: int) -> ScreenResult:
    result = ScreenResult()
    token = agent_token(bench)
    received: dict[str, float] = {}  # agent channel -> when its "ringing" arrived
    ready = asyncio.Event()

    async def listen() -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(bench.exchange.url("/events"), headers=headers) as response,
        ):
            if response.status != 200:
                raise RuntimeError(f"/events answered {response.status}")
            ready.set()
            async for raw in response.content:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                now = time.time()
                data: dict[str, Any] = json.loads(line[5:])
                if data.get("state") == "ringing":
                    received.setdefault(str(data.get("channel", "")), now)

    listener = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        async with bench.exchange.ami_events() as ami:
            await bench.sample_in_progress(result, rate, seconds, hold_ms)
            await asyncio.sleep(1)
            dials = ami.matching("DialBegin")
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    for event in dials:
        channel = event.get("DestChannel", "")
        if not channel.startswith(f"PJSIP/{AGENT}-") or channel not in received:
            continue
        try:
            emitted = float(event["Timestamp"])
        except (KeyError, ValueError):
            result.note = "AMI events carry no Timestamp (timestampevents)"
            continue
        result.latencies_ms.append((received[channel] - emitted) * 1000)
    result.matched = len(result.latencies_ms)
    return result
