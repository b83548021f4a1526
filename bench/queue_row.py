"""The queue row: a caller through 14070 to a KCC agent, with the KCC as a waiting line
(``kcc.mode = "queue"``), side by side with the same calls to the ring-all KCC.

Each mode gets an exchange of its own (the harness's, own ports and directory): three agent
phones that register with digest auth, sign in with the feature code (queue), answer
after 300 ms and talk 1.5 s; citizens on the trunk call 14070 and press 0 at a fixed rate.
Measured per mode: calls answered by an agent, the agents' phones rung per call (ring-all
rings every agent, busy or not; the queue one free agent), CPU per call of Asterisk and
`bereik serve` (/proc ticks, as the other rows; serve also less its own CPU with no
calls, measured after the agents signed in by bench.cpu.idle_ms_per_s: at one call a
second its workers and gauges would otherwise count as the calls'), and the time from
coming to the KCC (after the menu) to an agent's answer as the exchange recorded it
(``calls.wait_seconds``, the same definition in both modes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import stats
from bench.cpu import IDLE_SECONDS, idle_ms_per_s, sample
from bench.exchange import Exchange, Phone, free_port, until
from bench.profile import recorded
from bench.report import fmt, progress
from dialplan import asterisk

AGENTS = ("2001", "2002", "2003")
SEPARATOR = re.compile(r"^-{20,} .*$", re.MULTILINE)
QUEUE_TOML = "\n[queue]\nwrapup_seconds = 0\nagent_ring_seconds = 10\nposition_every_seconds = 30\n"


@dataclass
class QueueRow:
    mode: str
    rate: float
    placed: int = 0
    failed: int = 0
    answered: int = 0
    rung_per_call: float | None = None
    asterisk_ms: float | None = None
    serve_ms: float | None = None
    serve_idle_ms_per_s: float | None = None  # serve's CPU with no calls
    serve_net_ms: float | None = None  # serve_ms less that idle over the calls' window
    p50_s: float | None = None
    p95_s: float | None = None


async def measure(
    installation: asterisk.Installation,
    workdir: Path,
    mode: str,
    calls: int,
    rate: float,
    idle_seconds: float = IDLE_SECONDS,
    profile_dir: Path | None = None,
) -> QueueRow:
    phones = [Phone(e, free_port(), f"Agent {e}", registers=True) for e in AGENTS]
    (workdir / mode).mkdir(parents=True, exist_ok=True)
    ex = Exchange(
        installation,
        workdir / mode,
        phones=phones,
        kcc_agents=list(AGENTS),
        kcc_toml='mode = "queue"' if mode == "queue" else "",
        extra_toml=QUEUE_TOML if mode == "queue" else "",
        server_toml="first_prompt_seconds = 4",
    )
    try:
        ex.start_asterisk()
        ex.start_serve()
        logs = [ex.agent_phone(e, ring_ms=300, talk_ms=1500) for e in AGENTS]
        for extension in AGENTS:
            ex.register(extension)
            if mode == "queue":
                await ex.call(
                    ex.config.queue.sign_in_code, from_phone=extension, hold_ms=3000, timeout_s=30
                )
        assert ex.asterisk.process is not None and ex.serve_process is not None
        ast_pid, serve_pid = ex.asterisk.process.pid, ex.serve_process.pid
        idle = await idle_ms_per_s(serve_pid, idle_seconds)
        before_ast, before_serve, started = sample(ast_pid), sample(serve_pid), time.monotonic()
        with recorded(serve_pid, profile_dir, f"kcc-{mode}"):
            result = await ex.call(
                "14070",
                keys="0",
                key_delay_ms=500,
                hold_ms=20_000,
                calls=calls,
                rate=rate,
                limit=calls,
                timeout_s=int(calls / rate) + 90,
            )
        d_ast, d_serve = sample(ast_pid) - before_ast, sample(serve_pid) - before_serve
        window = time.monotonic() - started
        counts = result.counts()
        row = QueueRow(mode, rate, counts.get("TotalCallCreated", 0))
        row.failed = counts.get("FailedCall(C)", 0)
        invites = sum(invites_received(log) for log in logs)
        # Each call's row is decided when it ends; the last ones a moment after sipp.
        with contextlib.suppress(AssertionError):  # measured as they are, if not
            await until(
                lambda: (
                    ex.rows("select count(*) from calls where entry = '14070' and outcome = ''")
                    == [(0,)]
                ),
                timeout=20,
            )
        waits = [
            float(w)
            for (w,) in ex.rows(
                "select wait_seconds from calls where outcome = 'answered_kcc'"
                " and wait_seconds is not null"
            )
        ]
        row.answered = len(waits)
        if row.placed:
            row.rung_per_call = invites / row.placed
            row.asterisk_ms = d_ast.own_ms / row.placed
            row.serve_ms = d_serve.total_ms / row.placed
            row.serve_idle_ms_per_s = idle
            row.serve_net_ms = max(0.0, d_serve.total_ms - idle * window) / row.placed
        row.p50_s, row.p95_s = stats.percentile(waits, 0.5), stats.percentile(waits, 0.95)
        progress(
            f"  KCC {mode:<8} {rate:.1f}/s placed {row.placed} failed {row.failed} "
            f"answered {row.answered} rung/call {fmt(row.rung_per_call, 2)}"
        )
        return row
    finally:
        ex.close()


def invites_received(message_log: Path) -> int:
    """INVITEs a sipp phone received, from its message log (-trace_msg)."""
    text = message_log.read_text(errors="replace") if message_log.exists() else ""
    return sum(
        1
        for piece in SEPARATOR.split(text)
        if piece.lstrip().startswith(("UDP message received", "TCP message received"))
        and "\nINVITE sip:" in piece
    )


async def queue_rows(
    installation: asterisk.Installation,
    workdir: Path,
    calls: int,
    rate: float,
    idle_seconds: float = IDLE_SECONDS,
    profile_dir: Path | None = None,
) -> list[QueueRow]:
    return [
        await measure(installation, workdir, mode, calls, rate, idle_seconds, profile_dir)
        for mode in ("ringall", "queue")
    ]


def table(rows: list[QueueRow]) -> str:
    lines = [
        "| 14070 → 0 → KCC agent | calls/s | placed | failed | answered by an agent "
        "| agent phones rung per call | Asterisk CPU ms/call | bereik serve CPU ms/call "
        "| serve idle ms/s | serve less idle ms/call | to an agent p50 s | p95 s |",
        "|" + "---|" * 12,
    ]
    for row in rows:
        lines.append(
            f"| {'waiting line (queue)' if row.mode == 'queue' else 'ring-all'} "
            f"| {row.rate:.1f} | {row.placed} | {row.failed} | {row.answered} "
            f"| {fmt(row.rung_per_call, 2)} | {fmt(row.asterisk_ms, 1)} | {fmt(row.serve_ms, 1)} "
            f"| {fmt(row.serve_idle_ms_per_s, 1)} | {fmt(row.serve_net_ms, 1)} "
            f"| {fmt(row.p50_s, 2)} | {fmt(row.p95_s, 2)} |"
        )
    lines.append("")
    for row in rows:
        if row.mode == "queue" and row.asterisk_ms and row.serve_net_ms is not None:
            # Less idle, as the ivr rows' target: what the calls cost, not the clock.
            ratio = row.serve_net_ms / row.asterisk_ms
            lines.append(
                f"- queue path: bereik serve CPU per call {row.serve_net_ms:.1f} ms less idle "
                f"({fmt(row.serve_ms, 1)} with it) = {ratio:.2f} × Asterisk's "
                f"{row.asterisk_ms:.1f} ms ({'met' if ratio <= 1 / 3 else 'MISSED'}: ≤ ⅓ ×)"
            )
    return "\n".join(lines)


def main() -> None:
    """`python -m bench.queue_row [CALLS] [RATE] [--profile DIR]`: only this row (the bench
    runs it too)."""
    parser = argparse.ArgumentParser(prog="python -m bench.queue_row")
    parser.add_argument("calls", type=int, nargs="?", default=20)
    parser.add_argument("rate", type=float, nargs="?", default=1.0)
    parser.add_argument(
        "--profile", type=Path, help="py-spy bereik serve during each mode's calls; stacks to DIR"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bereik-bench-queue-"))
    rows = asyncio.run(
        queue_rows(asterisk.require(), workdir, args.calls, args.rate, profile_dir=args.profile)
    )
    print(table(rows))


if __name__ == "__main__":
    main()
