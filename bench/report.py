"""The bench's figures: its rows, the progress lines and the Markdown table it prints."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import screen, stats
from bench.cpu import CpuSample
from bench.steady import Steady
from dialplan import asterisk

ROW_NAMES = ["Asterisk alone", "classic AGI", "bare FastAGI", "Bereik FastAGI", "Bereik ivr"]


@dataclass
class Row:
    name: str
    rate: float
    placed: int = 0
    failed: int = 0
    asterisk_ms: float | None = None  # CPU per call
    agi_ms: float | None = None  # CPU per call of the AGI side
    agi_net_ms: float | None = None  # the same, less the AGI side's CPU when idle
    commands: float | None = None  # AGI commands per call, as counted by the AGI side
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""
    steady: Steady | None = None


@dataclass
class Probe:
    """One fixed-rate run of the maximum-rate search."""

    rate: float
    placed: int
    failed: int
    steady: Steady
    whole: dict[str, CpuSample]  # CPU spent over the whole run, per process

    HELD_WITHIN = 0.10  # rate × CPU/call within this share of the cores measured

    @property
    def levelled(self) -> bool:
        """Calls in progress levelled off: as many calls ended as started in the window."""
        measured, expected = self.steady.cores, self.steady.cores_from_rate
        return bool(measured and expected and abs(expected / measured - 1) <= self.HELD_WITHIN)

    def held(self, required_steady: bool) -> bool:
        return bool(self.placed) and self.failed == 0 and (self.levelled or not required_steady)

    def summary(self) -> str:
        return f"placed {self.placed}  failed {self.failed}  [{self.steady.check()}]"

    def cell(self) -> str:
        state = "levelled" if self.levelled else "not level"
        return f"{self.rate:.0f}: {self.placed}/{self.failed} {state}"


@dataclass
class MaxRate:
    """The maximum-rate search on one path (bench/maxrate.py) and its held probe's figures."""

    rate: float = 0.0
    placed: int = 0
    asterisk_ms: float | None = None
    serve_ms: float | None = None
    serve_children_ms: float | None = None  # of serve_ms: its child processes (espeak TTS)
    probes: list[Probe] = field(default_factory=list)
    path: str = "14070 → IVR → KCC"
    note: str = ""
    steady: Steady | None = None  # the held probe's; CPU figures from its window

    def take(self, probe: Probe) -> None:
        """The figures of a probe that held: its steady window's, else (a quick run's
        probes are too short to level off) the whole run's."""
        self.rate, self.placed, self.steady = probe.rate, probe.placed, probe.steady
        on_asterisk = probe.steady.per_call("asterisk")
        on_serve = probe.steady.per_call("serve")
        if on_asterisk is None or on_serve is None:
            on_asterisk = probe.whole["asterisk"].per(probe.placed)
            on_serve = probe.whole["serve"].per(probe.placed)
        self.asterisk_ms, self.serve_ms = on_asterisk.total_ms, on_serve.total_ms
        self.serve_children_ms = on_serve.children_ms

    @property
    def ratio(self) -> float | None:
        """bereik serve's CPU per call as a multiple of Asterisk's: the ⅓ target's figure."""
        if not self.asterisk_ms or self.serve_ms is None:
            return None
        return self.serve_ms / self.asterisk_ms


def ms_percentiles(times: list[float]) -> tuple[float | None, float | None]:
    p50, p99 = stats.percentile(times, 0.5), stats.percentile(times, 0.99)
    return (p50 * 1000 if p50 is not None else None, p99 * 1000 if p99 is not None else None)


def histogram_latencies(
    before: str, after: str
) -> tuple[float | None, float | None, float | None, int]:
    name = "bereik_agi_command_seconds"
    buckets = stats.diff(stats.scrape_histogram(after, name), stats.scrape_histogram(before, name))
    p50, p99 = stats.histogram_quantile(buckets, 0.5), stats.histogram_quantile(buckets, 0.99)
    count = max(buckets.values(), default=0.0)
    return (
        p50 * 1000 if p50 is not None else None,
        p99 * 1000 if p99 is not None else None,
        count,
        agi_failures(before, after),
    )


def agi_failures(before: str, after: str) -> int:
    def total(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(("bereik_agi_failures_total{", "bereik_agi_refused_total{"))
        )

    return round(total(after) - total(before))


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def table(rows: list[Row], paths: list[MaxRate], seen: screen.ScreenResult) -> str:
    header = (
        "| row | calls/s | placed | failed | Asterisk CPU ms/call | AGI-side CPU ms/call "
        "| AGI-side less idle | AGI cmds/call | cmd p50 ms | cmd p99 ms "
        "| steady window | rate × CPU/call | cores measured |"
    )
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:.0f} | {row.placed} | {row.failed} | "
            f"{fmt(row.asterisk_ms, 2)} | {fmt(row.agi_ms, 2)} | "
            f"{fmt(row.agi_net_ms if row.agi_net_ms is not None else row.agi_ms, 2)} | "
            f"{fmt(row.commands, 1)} | "
            f"{fmt(row.p50_ms, 3)} | {fmt(row.p99_ms, 3)} | {steady_cells(row.steady)} |"
        )
    lines += ["", *max_rate_table(paths)]
    lines += [
        "",
        "| event to screen (AMI DialBegin → SSE /events) | calls in progress | calls "
        "| measured | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
        f"| agent 2001's stream | {seen.in_progress} | {seen.placed} | {seen.matched} | "
        f"{fmt(seen.p50, 2)} | {fmt(seen.p99, 2)} |" + (f"\n\n{seen.note}" if seen.note else ""),
        "",
        *verdict(rows, paths),
        *screen_verdict(seen),
    ]
    return "\n".join(lines)


def max_rate_table(paths: list[MaxRate]) -> list[str]:
    """The maximum sustained rate of each path, side by side, and each search's probes."""
    if not paths:
        return []
    lines = [
        "| maximum sustained rate: no failed call, levelled off | calls/s | placed "
        "| Asterisk CPU ms/call | bereik serve CPU ms/call "
        "| of which child processes (TTS) | serve ÷ Asterisk "
        "| steady window | rate × CPU/call | cores measured |",
        "|" + "---|" * 10,
    ]
    for best in paths:
        lines.append(
            f"| {best.path} | {best.rate:.0f} | {best.placed} | "
            f"{fmt(best.asterisk_ms, 2)} | "
            f"{fmt(best.serve_ms, 2)} | {fmt(best.serve_children_ms, 2)} | "
            f"{fmt(best.ratio, 2)} | {steady_cells(best.steady)} |"
        )
    lines.append("")
    lines += [
        f"probes of {best.path} (calls/s: placed/failed, levelled off or not): "
        + (", ".join(probe.cell() for probe in best.probes) or "none")
        + (f"; {best.note.strip()}" if best.note else "")
        for best in paths
    ]
    return lines


def screen_verdict(seen: screen.ScreenResult) -> list[str]:
    if seen.p99 is None:
        return []
    lost = seen.placed - seen.matched
    return [
        f"- event to screen p99 {seen.p99:.1f} ms at {seen.in_progress} calls in progress "
        f"({'met' if seen.p99 < 100 else 'MISSED'}: < 100 ms at 100)",
        f"- event to screen: {lost} of {seen.placed} ringing updates lost "
        f"({'met' if lost == 0 else 'MISSED'}: none lost)",
    ]


def verdict(rows: list[Row], paths: list[MaxRate]) -> list[str]:
    """Bereik's targets from issue #9, checked against this run's own baselines."""
    lines = ["targets:"]
    by_rate: dict[float, dict[str, Row]] = {}
    for row in rows:
        by_rate.setdefault(row.rate, {})[row.name] = row
    for rate, named in sorted(by_rate.items()):
        bare, real = named.get("bare FastAGI"), named.get("Bereik ivr")
        layer = named.get("Bereik FastAGI")
        if bare and layer and bare.agi_ms and layer.agi_ms is not None:
            ratio = layer.agi_ms / bare.agi_ms
            lines.append(
                f"- {rate:.0f}/s: Bereik's FastAGI layer (same 3 commands) CPU "
                f"{layer.agi_ms:.2f} ms/call = {ratio:.1f} × bare"
            )
        if bare and real and bare.agi_ms and real.agi_ms is not None:
            net = real.agi_net_ms if real.agi_net_ms is not None else real.agi_ms
            ratio = net / bare.agi_ms
            lines.append(
                f"- {rate:.0f}/s: Bereik ivr CPU {net:.2f} ms/call less idle "
                f"({real.agi_ms:.2f} with it) = {ratio:.1f} × bare "
                f"({'met' if ratio <= 2 else 'MISSED'}: ≤ 2 ×)"
            )
        if real and real.p99_ms is not None:
            lines.append(
                f"- {rate:.0f}/s: Bereik command p99 {real.p99_ms:.2f} ms "
                f"({'met' if real.p99_ms < 5 else 'MISSED'}: < 5 ms)"
            )
    for best in paths:
        lines += max_rate_verdict(best)
    return lines


def max_rate_verdict(best: MaxRate) -> list[str]:
    """The ⅓ target on one path, and by how much it is missed: serve's CPU per call over
    what ⅓ of Asterisk's would allow."""
    lines: list[str] = []
    ratio = best.ratio
    if ratio is not None and best.asterisk_ms and best.serve_ms is not None:
        allowed = best.asterisk_ms / 3
        over = best.serve_ms - allowed
        by = (
            ""
            if ratio <= 1 / 3
            else f"; {over:.1f} ms/call over the {allowed:.1f} allowed, {over / allowed:.0%}"
        )
        lines.append(
            f"- max rate {best.rate:.0f}/s ({best.path}): bereik serve CPU per call "
            f"{best.serve_ms:.1f} ms = {ratio:.2f} × Asterisk's {best.asterisk_ms:.1f} ms "
            f"({'met' if ratio <= 1 / 3 else 'MISSED'}: ≤ ⅓ ×{by})"
        )
    elif not best.rate:
        lines.append(f"- {best.path}: no rate held{': ' + best.note.strip() if best.note else ''}")
    if best.steady is not None:
        lines.append(f"- max rate held ({best.path}): {best.steady.check()}")
    for probe in best.probes:
        if probe.failed == 0 and probe.placed and not probe.levelled:
            lines.append(
                f"- {probe.rate:.0f}/s ({best.path}): no failed call, but not held: "
                f"{probe.steady.check()}"
            )
    return lines


def steady_cells(steady: Steady | None) -> str:
    """Three cells: the window, rate × CPU per call and the cores measured over it."""
    if steady is None or steady.cores is None or steady.cores_from_rate is None:
        return f"{steady.note if steady else '-'} | - | -"
    low, high = steady.in_progress
    return (
        f"{steady.seconds:.0f} s, {low}→{high} in progress | "
        f"{steady.cores_from_rate:.2f} | {steady.cores:.2f}"
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    installation = asterisk.installed()
    version = installation.version if installation else "?"
    return (
        f"machine: {os.cpu_count()} cores, {cpu}; Python {sys.version.split()[0]}; "
        f"Asterisk {version}; sipp callers on loopback"
    )
