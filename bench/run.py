"""Benchmarks of the call path, side by side with their baselines, in one run.

    python -m bench            # full: 20, 50 and 100 calls/s for 10 s per row, then the max rate
    python -m bench --quick    # CI: 10 calls/s for 2 s per row, a short max-rate search

One Asterisk instance (the e2e harness's Exchange, own ports and directory), one
`bereik serve` on a database with realistic data, and sipp callers on the trunk. Each row's
extension does the same work (see bench/dialplan.py). The figures are printed as one table;
the command exits 0 whatever they are: it is a measurement, not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench import admission, ami_ingest, dialplan, docfigures, kcc_line, memory, queue_row, screen
from bench.cpu import idle_ms_per_s, idle_seconds
from bench.dataset import CLOSED_HOPPERS, OPEN_HOPPERS, TEAMS, fill, teams_toml
from bench.exchange import Exchange, Phone, free_port
from bench.mailsink import MailSink
from bench.maxrate import (
    ANNOUNCEMENT,
    EXTRA_TOML,
    HOPPER,
    IVR,
    LINE,
    PATHS,
    PROBES,
    max_rate,
    overload,
    to_announcement_path,
    to_hopper_path,
)
from bench.profile import recorded
from bench.report import (
    MaxRate,
    Row,
    fmt,
    histogram_latencies,
    machine,
    ms_percentiles,
    progress,
    table,
)
from bench.steady import Steady, watch
from dialplan import asterisk

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# No greeting and no menu (the harness's hours are open around the clock): the IVR does
# its real look-ups (hours, announcements, the caller's open hoppers) and routes at once, so
# the Bereik row measures the handler, not a prompt's playing time.
# For the max rate through IVR → team → hopper: key 1 is a team with no members, so the
# team handler finds nobody present and the hopper handler offers the callback.


# The queue row: (calls, calls/s) in quick and full mode. Three agents handle a call in
# about 1.8 s, so 1 call/s keeps them busy without overloading either mode.
QUEUE_LOAD = {True: (4, 1.0), False: (60, 1.0)}
# Calls the memory row replays after its calls in progress: --quick, full.
MEMORY_CALLS = {True: 600, False: 10_000}


class Bench:
    def __init__(
        self,
        quick: bool,
        rates: list[float],
        seconds: float,
        workdir: Path,
        profile_dir: Path | None = None,
    ) -> None:
        self.quick = quick
        self.profile_dir = profile_dir
        self.rates = rates
        self.seconds = seconds
        self.workdir = workdir
        self.installation = asterisk.require()
        ensure_chroot_python(self.installation)
        self.exchange = Exchange(
            self.installation,
            workdir,
            phones=[Phone("2001", free_port(), "KCC bench")],
            kcc_agents=["2001"],
            teams_toml=teams_toml(),
            extra_toml=EXTRA_TOML,
        )
        self.bench_dir = self.exchange.host_instance / "bench"
        self.classic_log = self.bench_dir / "classic.txt"
        self.bare_port = free_port()
        self.bare_process: subprocess.Popen[bytes] | None = None
        self.idle_ms_per_s = 0.0
        self.probes = 0
        self.max_probes = PROBES
        self.runs = 0
        self.mail = MailSink(self.exchange.ports.smtp)
        self.started = False  # the mail sink runs

    # setup

    def start(self) -> None:
        ex = self.exchange
        # The quick run (CI's smoke test: every row runs, no figure is kept) fills a tenth:
        # the start-up's reminder mails for every open hopper are what it would wait on.
        full = (CLOSED_HOPPERS, OPEN_HOPPERS)
        closed, open_ = (full[0] // 10, full[1] // 10) if self.quick else full
        progress(f"database: {TEAMS} teams, {closed:,} closed + {open_:,} open hoppers")
        fill(ex.config.database.url, closed, open_)
        progress("starting Asterisk and bereik serve")
        ex.start_asterisk()
        self.bench_dir.mkdir(parents=True, exist_ok=True)
        script = self.bench_dir / "classic_agi.py"
        shutil.copy(HERE / "classic_agi.py", script)
        script.chmod(0o755)
        inside = f"{ex.instance_dir}/bench"
        dialplan.append(
            ex.host_instance / "etc" / "extensions.conf",
            dialplan.BenchPaths(
                classic_script=f"{inside}/classic_agi.py",
                classic_log=f"{inside}/classic.txt",
                bare_agi=f"agi://127.0.0.1:{self.bare_port}",
                # The two single-purpose servers run one at a time, on the same port.
                framework_agi=f"agi://127.0.0.1:{self.bare_port}",
            ),
        )
        ex.cli("dialplan reload")
        if "bench-floor" not in ex.cli("dialplan show bench-floor"):
            raise RuntimeError("the bench contexts did not load; see the instance's messages.log")
        self.mail.start()
        self.started = True
        ex.start_serve()
        ex.phone("2001", ring_ms=100)
        self._settle()

    def _settle(self, timeout: float = 120.0) -> None:
        """Wait until serve's start-up work is done: the outbox holds no unsent mail."""
        deadline = time.monotonic() + timeout
        time.sleep(2)  # the scheduler's first pass queues the reminders of the data set
        while time.monotonic() < deadline:
            unsent = self.exchange.rows("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
            if unsent[0].n == 0:
                progress(f"  outbox empty ({self.mail.received} mails delivered to the sink)")
                return
            time.sleep(1)
        progress("  warning: the outbox still holds unsent mail; serve's idle CPU includes it")

    def close(self) -> None:
        self._stop_bare()
        self.exchange.close()
        if self.started:
            self.mail.stop()

    @contextlib.contextmanager
    def on(self, exchange: Exchange) -> Iterator[None]:
        """Measure on another exchange meanwhile (the KCC line's, bench/kcc_line.py): the
        same fixed-rate runs, CPU samples and profiles, of that exchange's processes."""
        own, self.exchange = self.exchange, exchange
        try:
            yield
        finally:
            self.exchange = own

    @property
    def asterisk_pid(self) -> int:
        process = self.exchange.asterisk.process
        assert process is not None
        return process.pid

    @property
    def serve_pid(self) -> int:
        process = self.exchange.serve_process
        assert process is not None
        return process.pid

    # one fixed-rate run

    async def run_steady(
        self,
        number: str,
        rate: float,
        seconds: float,
        hold_ms: int,
        keys: str = "",
        caller: str = "0612345678",
        pids: dict[str, int] | None = None,
    ) -> tuple[int, int, int, Steady]:
        """Place calls at `rate` for `seconds`, wait until every channel is gone; the CPU of
        `pids` over the run's steady window (bench/steady.py)."""
        calls = max(1, round(rate * seconds))
        self.runs += 1
        stat_file = self.workdir / f"run-{self.runs}.csv"
        placing = self.exchange.call(
            number,
            calls=calls,
            rate=rate,
            limit=calls,
            hold_ms=hold_ms,
            keys=keys,
            caller=caller,
            key_delay_ms=300 if keys else 1,
            timeout_s=int(seconds + 60),
            stat_file=stat_file,
        )
        result, steady = await watch(placing, stat_file, rate, pids or {})
        counts = result.counts()
        await self._drain()
        placed = counts.get("TotalCallCreated", 0)
        failed = counts.get("FailedCall(C)", placed) + max(0, calls - placed)
        return calls, placed, failed, steady

    async def _drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exchange.active_channels() == 0:
                return
            await asyncio.sleep(0.2)
        progress(f"warning: channels left after {timeout:.0f} s")

    async def measure(
        self,
        name: str,
        number: str,
        rate: float,
        agi_pid: Callable[[], int | None],
        latencies: Callable[[], tuple[float | None, float | None, float | None, int]],
        before: Callable[[], None] = lambda: None,
    ) -> Row:
        """Place calls at `rate` for the bench's seconds; CPU per call over the run's steady
        window (bench/steady.py), latency over all its calls."""
        before()
        pid = agi_pid()
        pids = {"asterisk": self.asterisk_pid, **({"agi": pid} if pid else {})}
        _, placed, failed, steady = await self.run_steady(
            number, rate, self.seconds, hold_ms=10_000, pids=pids
        )
        p50, p99, commands, agi_failed = latencies()
        row = Row(name, rate, placed, failed + agi_failed, steady=steady)
        on_asterisk, on_agi = steady.per_call("asterisk"), steady.per_call("agi")
        if on_asterisk is not None:
            row.asterisk_ms = on_asterisk.own_ms
            if name == "classic AGI":
                # The scripts are Asterisk's children: their CPU is cutime/cstime.
                row.agi_ms = on_asterisk.children_ms
            elif on_agi is not None:
                row.agi_ms = on_agi.total_ms
                if name == "Bereik ivr":
                    # Less what serve spends anyway without calls (workers, gauges): the
                    # part the calls cost.
                    idle = self.idle_ms_per_s * steady.seconds / steady.ended
                    row.agi_net_ms = max(0.0, on_agi.total_ms - idle)
        if placed:
            row.commands = commands / placed if commands else None
        row.p50_ms, row.p99_ms = p50, p99
        progress(
            f"  {name:<16} {rate:>5.0f}/s  placed {placed:>5}  failed {row.failed:>3}  "
            f"Asterisk {fmt(row.asterisk_ms)} ms/call  AGI {fmt(row.agi_ms)} ms/call  "
            f"p50 {fmt(p50, 3)} ms  p99 {fmt(p99, 3)} ms  [{steady.check()}]"
        )
        await asyncio.sleep(0.5)
        return row

    async def idle(self) -> float:
        """bereik serve's own CPU with no calls (workers, gauges, AMI pings), in ms per s."""
        self.idle_ms_per_s = await idle_ms_per_s(self.serve_pid, idle_seconds(self.quick))
        progress(f"  bereik serve idle: {self.idle_ms_per_s:.1f} ms CPU per second")
        return self.idle_ms_per_s

    # the four rows

    async def floor(self, rate: float) -> Row:
        return await self.measure(
            "Asterisk alone", dialplan.FLOOR, rate, lambda: None, lambda: (None, None, None, 0)
        )

    async def classic(self, rate: float) -> Row:
        def reset() -> None:
            self.classic_log.write_text("")

        def latencies() -> tuple[float | None, float | None, float | None, int]:
            times = [float(line) for line in self.classic_log.read_text().split()]
            return *ms_percentiles(times), len(times), 0

        return await self.measure(
            "classic AGI", dialplan.CLASSIC, rate, lambda: None, latencies, reset
        )

    async def bare(self, rate: float) -> Row:
        out = self.workdir / "bare.json"
        self._start_bare(out)

        def latencies() -> tuple[float | None, float | None, float | None, int]:
            self._stop_bare()
            data = json.loads(out.read_text())
            times = data["latencies"]
            return *ms_percentiles(times), len(times), int(data["failed"])

        return await self.measure(
            "bare FastAGI", dialplan.BARE, rate, lambda: self._bare_pid(), latencies
        )

    async def framework(self, rate: float) -> Row:
        """Our FastAGI server with the bare row's 3 commands: the cost of the layer itself."""
        out = self.workdir / "framework.json"
        self._start_bare(out, "bench.framework_agi")

        def latencies() -> tuple[float | None, float | None, float | None, int]:
            self._stop_bare()
            data = json.loads(out.read_text())
            times = data["latencies"]
            return *ms_percentiles(times), len(times), int(data["failed"])

        return await self.measure(
            "Bereik FastAGI", dialplan.FRAMEWORK, rate, lambda: self._bare_pid(), latencies
        )

    async def bereik(self, rate: float) -> Row:
        snapshot: dict[str, str] = {}

        def before() -> None:
            snapshot["metrics"] = self.metrics()

        def latencies() -> tuple[float | None, float | None, float | None, int]:
            return histogram_latencies(snapshot["metrics"], self.metrics())

        with self.profile(f"ivr-{rate:.0f}cps"):
            row = await self.measure(
                "Bereik ivr", dialplan.BEREIK, rate, lambda: self.serve_pid, latencies, before
            )
        row.note = "p50/p99 from bereik_agi_command_seconds buckets"
        return row

    def profile(self, label: str) -> contextlib.AbstractContextManager[None]:
        """py-spy on bereik serve meanwhile (--profile DIR; bench/profile.py)."""
        return recorded(self.serve_pid, self.profile_dir, label)

    async def sample_in_progress(
        self, result: screen.ScreenResult, rate: float, seconds: float, hold_ms: int
    ) -> None:
        """Calls on 14070 at `rate`; notes the median number of calls in progress."""
        counts: list[int] = []

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.5)
                # Each call in progress has two channels here: the caller's and the agent's.
                counts.append(await asyncio.to_thread(self.exchange.active_channels) // 2)

        watcher = asyncio.create_task(watch())
        try:
            _, result.placed, _, _ = await self.run_steady(
                self.exchange.config.exchange.main_number, rate, seconds, hold_ms=hold_ms
            )
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        busy = sorted(counts)[len(counts) // 4 :] if counts else []  # without the ramp-up
        result.in_progress = busy[len(busy) // 2] if busy else 0

    async def screen(self) -> screen.ScreenResult:
        # About 100 calls in progress (the target's load): each lasts the IVR, 100 ms of
        # ringing and the hold.
        seconds = 4.0 if self.quick else 15.0
        rate, hold_ms = (5.0, 1000) if self.quick else (20.0, 5000)
        try:
            with self.profile("screen"):
                found = await screen.measure(self, rate, seconds, hold_ms)
        except (RuntimeError, OSError, TimeoutError) as exc:
            return screen.ScreenResult(note=f"not measured: {exc}")
        progress(
            f"  event to screen: {found.matched} of {found.placed} calls, about "
            f"{found.in_progress} in progress, p50 {fmt(found.p50, 2)} ms "
            f"p99 {fmt(found.p99, 2)} ms"
        )
        return found

    # the maximum sustained rate through the real 14070 path

    # helpers

    def metrics(self) -> str:
        with urllib.request.urlopen(self.exchange.url("/metrics"), timeout=10) as response:
            return str(response.read().decode())

    def _start_bare(self, out: Path, module: str = "bench.bare_agi") -> None:
        out.unlink(missing_ok=True)
        self.bare_process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--port",
                str(self.bare_port),
                "--out",
                str(out),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.bare_port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the bare FastAGI server did not start")

    def _bare_pid(self) -> int | None:
        return self.bare_process.pid if self.bare_process else None

    def _stop_bare(self) -> None:
        process, self.bare_process = self.bare_process, None
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def ensure_chroot_python(installation: asterisk.Installation) -> None:
    """The classic AGI row runs a Python script inside the Asterisk root: install python3."""
    if not installation.chrooted or installation.host_path("/usr/bin/python3").exists():
        return
    progress("installing python3 in the Asterisk root for the classic AGI row")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = installation.command("apt-get", "install", "-y", "--no-install-recommends", "python3")
    first = subprocess.run(install, capture_output=True, env=env, timeout=600, check=False)
    if first.returncode != 0:
        # The root's package lists may be gone or stale: refresh them once and retry.
        subprocess.run(
            installation.command("apt-get", "update"),
            capture_output=True,
            env=env,
            timeout=600,
            check=False,
        )
        retry = subprocess.run(install, capture_output=True, env=env, timeout=600, check=False)
        if retry.returncode != 0:
            raise RuntimeError(
                "could not install python3 in the Asterisk root: "
                + retry.stderr.decode(errors="replace")[-500:]
            )


# The per-rate rows: the names --rows takes and the Bench method of each, in run order.
ROWS = {
    "floor": "floor",
    "classic": "classic",
    "bare": "bare",
    "framework": "framework",
    "ivr": "bereik",
}


async def measure_all(
    bench: Bench, rates: list[float], seconds: float, skip_max: bool, chosen: list[str] | None
) -> tuple[list[Row], list[MaxRate], screen.ScreenResult, admission.Overload]:
    """Every row and section on the bench's exchange; with `chosen` (--rows) only those
    per-rate rows and max-rate paths. (The KCC line's path has an exchange of its own:
    bench/kcc_line.py, after this.)"""
    rows: list[Row] = []
    per_rate = chosen is None or bool(set(chosen) & set(ROWS))
    if per_rate:
        await bench.idle()  # what the ivr rows take off serve's CPU
    for rate in rates if per_rate else []:
        progress(f"{rate:.0f} calls/s for {seconds:.0f} s per row")
        for name, method in ROWS.items():
            if chosen is None or name in chosen:
                row: Callable[[float], Awaitable[Row]] = getattr(bench, method)
                rows.append(await row(rate))
    skipped = "skipped (--rows)" if chosen is not None else "skipped"
    if chosen is None:
        progress("event to screen (AMI → SSE)")
        seen = await bench.screen()
    else:
        seen = screen.ScreenResult(note=skipped)
    if skip_max:
        return rows, [], seen, admission.Overload(note=skipped)

    def wanted(key: str) -> bool:
        return chosen is None or key in chosen

    # In this order: the ivr path needs the bench's IVR without a menu, the others the
    # menu (set once, serve restarted); the announcement, once live, would be heard on
    # every later call, so it comes last.
    paths: list[MaxRate] = []
    if wanted(IVR.key):
        progress(f"maximum sustained rate: {IVR.label}")
        paths.append(await max_rate(bench, IVR))
    best = MaxRate(path=HOPPER.label)
    if wanted(HOPPER.key):
        progress(f"maximum sustained rate: {HOPPER.label}")
        if await to_hopper_path(bench):
            best = await max_rate(bench, HOPPER)
        else:
            best.note = "not measured: the test call made no hopper in this tree"
        paths.append(best)
    over = admission.Overload(note=skipped)
    if chosen is None:
        progress("overload: twice the maximum rate, through admission control")
        over = await overload(bench, best)
    if wanted(ANNOUNCEMENT.key):
        progress(f"maximum sustained rate: {ANNOUNCEMENT.label}")
        to_announcement_path(bench)
        paths.append(await max_rate(bench, ANNOUNCEMENT))
    return rows, paths, seen, over


def run(args: argparse.Namespace) -> int:
    rates = args.rates or ([10.0] if args.quick else [20.0, 50.0, 100.0])
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    workdir = Path(tempfile.mkdtemp(prefix="bereik-bench-"))
    bench = Bench(args.quick, rates, seconds, workdir, args.profile)
    bench.max_probes = args.probes
    # --rows max-line alone needs nothing of the bench's own exchange.
    line_only = args.rows is not None and set(args.rows) == {LINE.key}
    try:
        try:
            rows: list[Row] = []
            paths: list[MaxRate] = []
            seen = screen.ScreenResult(note="skipped (--rows)")
            over = admission.Overload(note="skipped (--rows)")
            if not line_only:
                # Set-up is synchronous (Alembic runs its own event loop), the calls async.
                bench.start()
                rows, paths, seen, over = asyncio.run(
                    measure_all(bench, rates, seconds, args.skip_max, args.rows)
                )
        finally:
            bench.close()
        if LINE.key in (args.rows or ([] if args.skip_max else [LINE.key])):
            # The KCC as a waiting line: an exchange of its own, after the bench's is gone.
            progress(f"maximum sustained rate: {LINE.label}")
            (workdir / "line").mkdir()
            paths.append(asyncio.run(kcc_line.max_rate(bench, workdir / "line")))
            paths.sort(key=lambda found: [path.label for path in PATHS.values()].index(found.path))
        if args.rows is not None:
            # Only the chosen rows, side by side with their verdicts: a quick measurement
            # while working on one part, never the page's figures (main refuses --write-docs).
            print(machine(), flush=True)
            print(f"mode: rows {', '.join(args.rows)}, {seconds:.0f} s per row\n", flush=True)
            print(table(rows, paths, seen), flush=True)
            return 0
        # The waiting line's row: exchanges of its own, after the bench's is gone.
        calls, rate = QUEUE_LOAD[args.quick]
        progress(f"14070 → KCC agent, ring-all and waiting line: {calls} calls at {rate}/s")
        lines = queue_row.table(
            asyncio.run(
                queue_row.queue_rows(
                    bench.installation, workdir, calls, rate, idle_seconds(args.quick)
                )
            )
        )
        handled = MEMORY_CALLS[args.quick]
        progress(f"memory of bereik serve: calls in progress, then {handled:,} calls handled")
        (workdir / "memory").mkdir()
        memory_row = asyncio.run(memory.measure(bench.installation, workdir / "memory", handled))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        report.append(text)

    emit(machine())
    emit(f"mode: {'quick' if args.quick else 'full'}, {seconds:.0f} s per row\n")
    emit(table(rows, paths, seen))
    emit("\n".join(["", *admission.table(over), "", over.verdict()]))
    progress("AMI ingest: the listener's whole path beside panoramisk's bare parse")
    ingest = ami_ingest.measure(count=20 if args.quick else 200)
    hopper = next((found for found in paths if found.path == HOPPER.label), MaxRate())
    emit("\n".join(["", *ingest.lines(hopper.rate or None)]))
    emit("\n" + lines)
    emit("\n".join(["", *memory_row.lines()]))
    if args.write_docs:
        write_docs(args.write_docs, "\n".join(report), sys.argv[1:])
    return 0 if ingest.complete else 1


def write_docs(page: Path, report: str, argv: list[str]) -> None:
    """The run's report, as printed, between the page's `bench` figure markers."""
    command = " ".join(["python -m bench", *argv])
    docfigures.rewrite(
        page,
        "bench",
        f"```\n{report.strip()}\n```",
        command=command,
        on=f"{docfigures.machine(load=False)}, main at {docfigures.commit()}",
    )


def _row_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = [*ROWS, *PATHS]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown row {', '.join(unknown) or '(none)'}; rows are {','.join(known)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per row (CI)")
    parser.add_argument("--rates", type=float, nargs="+", help="calls per second per row")
    parser.add_argument("--seconds", type=float, help="seconds of calls per row and rate")
    parser.add_argument("--skip-max", action="store_true", help="leave out the max-rate search")
    parser.add_argument(
        "--rows",
        type=_row_names,
        metavar="NAME,...",
        help=f"only these per-rate rows ({','.join(ROWS)}) and maximum-rate searches "
        f"({','.join(PATHS)}), no other section",
    )
    parser.add_argument(
        "--probes",
        type=int,
        default=PROBES,
        metavar="N",
        help=f"at most N probes of a minute per maximum-rate search (default {PROBES})",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy bereik serve in each Bereik row; stacks to DIR"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--write-docs",
        type=Path,
        nargs="?",
        const=Path(__file__).resolve().parent / "README.md",
        metavar="PAGE",
        help="also put the report between the page's figure markers (default bench/README.md)",
    )
    args = parser.parse_args(argv)
    if args.write_docs and args.rows is not None:
        parser.error("--write-docs takes the whole run's report, not --rows")
    if args.write_docs:
        # The page's markers are checked before the run, not after its minutes of calls.
        try:
            docfigures.replace(args.write_docs.read_text(), "bench", "", str(args.write_docs))
        except (OSError, docfigures.MarkersMissing) as error:
            parser.error(str(error))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
