"""Bereik's FastAGI server (agi/server.py) with a handler doing only the bench's 3 commands.

Between the bare asyncio row and the real `ivr` row: the same work as the bare handler,
through our server (header parsing, typed responses, timeouts, the connection cap), so
the table separates what the FastAGI layer costs from what the real handler's look-ups
and writes cost. A process of its own, like bench.bare_agi, so its CPU is measured alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from agi.server import AgiChannel, AgiObserver, FastAgiServer


class Recorder(AgiObserver):
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.calls = 0
        self.failures = 0

    def command(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def handled(self, handler: str, seconds: float) -> None:
        self.calls += 1

    def failed(self, handler: str) -> None:
        self.failures += 1


async def bench(channel: AgiChannel) -> None:
    await channel.set_variable("BENCH_A", "1")
    await channel.set_variable("BENCH_B", "2")
    await channel.set_variable("BENCH_C", "3")


async def serve(port: int, out: Path) -> None:
    recorder = Recorder()
    server = FastAgiServer({"bench": bench}, port=port, observer=recorder)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.close()
    out.write_text(  # noqa: ASYNC240 (the loop has nothing left to serve)
        json.dumps(
            {"calls": recorder.calls, "failed": recorder.failures, "latencies": recorder.latencies}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


if __name__ == "__main__":
    main()
