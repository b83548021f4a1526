"""Resident memory of `bereik serve`: with calls in progress, and as calls are handled.

    python -m bench.memory [--calls 10000]

`bereik serve` runs as in production, in a process of its own (its SQLite store, web and
FastAGI servers, workers and gauges), with its AMI connected to the small fake Asterisk of
bench.ami_ingest instead of a real one: what is measured is memory, not speed, and a
replayed stream reaches 10,000 calls in seconds where Asterisk on two cores makes about ten
a second. The fake sends the recorded stream of real calls (tests/e2e/data/ami_stream.txt,
as Asterisk sends it to Bereik; six calls per copy, each copy with uniqueids of its own):

1. nothing: serve's memory with no call (the baseline of this row);
2. the first part of each copy's events (channels, the route, the ringing and answering,
   not their hangups) until 100 and then 500 calls are in progress, as the database shows
   them (calls rows without an end); then the rest, so that every one of them ends;
3. whole copies, in five batches, until `--calls` calls were handled (each ended in the
   database): serve's memory after each batch.

Memory is VmRSS from /proc/PID/status of the serve process. Reported: memory at 0, 100
and 500 calls in progress and the cost per call in progress, and the growth per 1,000
calls handled over the second half of the batches (the first ones fill SQLite's bounded
page caches and the allocator's pools, so memory rises and levels off there; the table
shows each batch). A process that keeps nothing per handled call grows by about nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from panoramisk.message import Message

from bench.ami_ingest import EOL, STREAM, FakeAsterisk, _renumber, events_of
from bench.ami_ingest import UNIQUEID as UNIQUEIDS
from bench.exchange import Exchange, Phone, free_port, until
from bench.report import progress
from cti.calls.tracker import CallTracker, Ended, Started
from dialplan import asterisk

# Events that end a call's legs: held back while calls are to stay in progress.
ENDING = ("Event: Hangup", "Event: Cdr", "Event: CEL")
IN_PROGRESS = (100, 500)
BATCHES = 5
# The recording's team (bench.ami_ingest.CONFIG), so its team call is followed as one.
TEAM = """
[[teams]]
id = "vergunningen"
name = "Vergunningen"
number = "7101"
members = ["2101"]
mailbox = "vergunningen@example.org"
"""


@dataclass
class MemoryRow:
    calls: int  # calls handled in the growth part
    rss_kib: dict[str, int] = field(default_factory=dict)  # label -> VmRSS
    handled: list[tuple[int, int]] = field(default_factory=list)  # (calls handled, VmRSS)

    def per_call_in_progress_kib(self) -> float | None:
        top = IN_PROGRESS[-1]
        low, high = self.rss_kib.get("0"), self.rss_kib.get(str(top))
        return None if low is None or high is None else (high - low) / top

    def growth_from(self) -> int:
        """The batch the growth is measured from: the middle one. Memory rises over the
        first batches as SQLite's page caches fill (they are bounded, so it levels off):
        what would grow without end shows in the second half."""
        return len(self.handled) // 2

    def growth_per_1000_kib(self) -> float | None:
        if len(self.handled) < 2:
            return None
        first_calls, first_rss = self.handled[self.growth_from()]
        last_calls, last_rss = self.handled[-1]
        return (last_rss - first_rss) / (last_calls - first_calls) * 1000

    def lines(self) -> list[str]:
        rows = [
            "| bereik serve resident memory (VmRSS) | calls | MiB |",
            "|---|---:|---:|",
            f"| no call (baseline) | 0 | {mib(self.rss_kib.get('0'))} |",
        ]
        for count in IN_PROGRESS:
            rows.append(f"| calls in progress | {count} | {mib(self.rss_kib.get(str(count)))} |")
        rows.append(f"| all of them ended | 0 | {mib(self.rss_kib.get('ended'))} |")
        for calls, rss in self.handled:
            rows.append(f"| calls handled | {calls:,} | {mib(rss)} |")
        per_call = self.per_call_in_progress_kib()
        growth = self.growth_per_1000_kib()
        rows += [
            "",
            f"- memory per call in progress: {fmt_kib(per_call)} KiB "
            f"(0 → {IN_PROGRESS[-1]} in progress)",
            f"- growth with calls handled: {fmt_kib(growth)} KiB per 1,000 calls "
            f"(from {self.handled[self.growth_from()][0]:,} to {self.handled[-1][0]:,} handled)"
            if self.handled
            else "- growth with calls handled: not measured",
        ]
        return rows


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def fmt_kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Copies:
    """Renumbered copies of the recorded stream, each split into its calls' first part
    and the events that end them."""

    def __init__(self, stream: Path = STREAM) -> None:
        self.blocks = events_of(stream.read_bytes().decode())
        self.made = 0
        starts = [b for b in self.blocks if not b.startswith(ENDING)]
        self.calls_per_copy = _count(starts, Started)
        self.ended_per_copy = _count(self.blocks, Ended)

    def next(self, count: int) -> tuple[bytes, bytes]:
        """The next `count` copies: (their first parts, the events that end them)."""
        starts: list[str] = []
        ends: list[str] = []
        for _ in range(count):
            self.made += 1
            renumber = _renumber(f"{self.made}")
            for block in self.blocks:
                (ends if block.startswith(ENDING) else starts).append(
                    UNIQUEIDS.sub(renumber, block)
                )
        return _wire(starts), _wire(ends)


def _wire(blocks: list[str]) -> bytes:
    return "".join(block + EOL + EOL for block in blocks).encode()


def _count(blocks: list[str], kind: type) -> int:
    tracker = CallTracker("14070", "7000", {"7101": "vergunningen"})
    found = 0
    for block in blocks:
        message = Message.from_line(block)
        if message is not None:
            found += sum(isinstance(effect, kind) for effect in tracker.feed(message))
    return found


class ReplayingAsterisk(FakeAsterisk):
    """bench.ami_ingest's fake Asterisk for `bereik serve`: the events are those the bench
    pushes, when it pushes them."""

    def __init__(self) -> None:
        super().__init__(b"")
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    def listed(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()

    async def push(self, payload: bytes) -> None:
        assert self.writer is not None, "bereik serve is not connected"
        self.writer.write(payload)
        await self.writer.drain()

    async def close(self) -> None:
        """After serve stopped: its connection's end is read before the loop ends."""
        if self.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), timeout=5)
        await super().close()


async def measure(installation: asterisk.Installation, workdir: Path, calls: int) -> MemoryRow:
    row = MemoryRow(calls)
    fake = ReplayingAsterisk()
    port = free_port()
    await fake.start(port)
    phones = [Phone("2001", free_port(), "KCC"), Phone("2101", free_port(), "Vergunningen")]
    ex = Exchange(installation, workdir, phones=phones, teams_toml=TEAM)
    try:
        toml = ex.config_path.read_text()
        ex.config_path.write_text(
            toml.replace(f"ami_port = {ex.ports.ami}\n", f"ami_port = {port}\n", 1)
        )
        await asyncio.to_thread(ex.start_serve)
        assert ex.serve_process is not None
        pid = ex.serve_process.pid
        await asyncio.wait_for(fake.connected.wait(), timeout=60)
        copies = Copies()

        def counts() -> tuple[int, int]:
            row_ = ex.rows("SELECT count(*) AS total, count(ended_at) AS ended FROM calls")[0]
            return int(row_.total), int(row_.ended)

        row.rss_kib["0"] = rss_kib(pid)
        progress("memory: calls in progress")
        held: list[bytes] = []
        started = 0
        for target in IN_PROGRESS:
            wanted = -(-(target - started) // copies.calls_per_copy)  # copies, rounded up
            first, ends = copies.next(wanted)
            held.append(ends)
            started += wanted * copies.calls_per_copy
            await fake.push(first)
            await until(lambda s=started: counts() == (s, 0), timeout=120)
            row.rss_kib[str(target)] = rss_kib(pid)
        for ends in held:
            await fake.push(ends)
        ended = copies.made * copies.ended_per_copy
        await until(lambda: counts()[1] == ended, timeout=120)
        row.rss_kib["ended"] = rss_kib(pid)

        per_batch = -(-calls // BATCHES // copies.calls_per_copy)
        for batch in range(1, BATCHES + 1):
            progress(f"memory: calls handled, batch {batch} of {BATCHES}")
            first, ends = copies.next(per_batch)
            await fake.push(first + ends)
            ended += per_batch * copies.ended_per_copy
            await until(lambda e=ended: counts()[1] == e, timeout=300)
            row.handled.append((batch * per_batch * copies.calls_per_copy, rss_kib(pid)))
    except BaseException:
        calls_rows = ex.rows("SELECT count(*), count(ended_at) FROM calls")
        progress(f"memory: calls rows (all, ended): {calls_rows}")
        progress(f"memory: serve's log ends with:\n{ex.serve_log.read_text()[-1500:]}")
        raise
    finally:
        ex.close()
        await fake.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=int, default=10_000, help="calls handled in the growth part"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bereik-bench-memory-"))
    try:
        row = asyncio.run(measure(asterisk.require(), workdir, args.calls))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(row.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
