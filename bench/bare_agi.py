"""The lower bound for Python: a bare asyncio FastAGI server doing the bench's 3 commands.

No framework, no database, no metrics: read the agi_* header, send three SET VARIABLE
commands and read each answer, close. It records each command's round trip (write to
answer, as the server sees it) and writes them as JSON when it gets SIGTERM.

Run as a process of its own (`python -m bench.bare_agi --port P --out F`) so its CPU time
is measured apart from the bench's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

COMMANDS = [
    b'SET VARIABLE BENCH_A "1"\n',
    b'SET VARIABLE BENCH_B "2"\n',
    b'SET VARIABLE BENCH_C "3"\n',
]


class BareServer:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.calls = 0
        self.failed = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = 0
            while (await reader.readline()).strip():
                header += 1  # nothing in the header matters to this handler
            if not header:
                return  # a port probe, not a call
            for command in COMMANDS:
                started = time.perf_counter()
                writer.write(command)
                answer = await reader.readline()
                while answer.startswith(b"HANGUP"):
                    answer = await reader.readline()
                self.latencies.append(time.perf_counter() - started)
                if not answer.startswith(b"200"):
                    self.failed += 1
                    break
            self.calls += 1
        except ConnectionError:
            self.failed += 1
        finally:
            writer.close()


async def serve(port: int, out: Path) -> None:
    bare = BareServer()
    server = await asyncio.start_server(bare.handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    # The loop is done serving: a blocking write no longer delays anyone.
    out.write_text(  # noqa: ASYNC240
        json.dumps({"calls": bare.calls, "failed": bare.failed, "latencies": bare.latencies})
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


if __name__ == "__main__":
    main()
