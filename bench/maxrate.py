"""The maximum sustained rate through the real 14070 path: a search over call rates.

It doubles the rate until a probe loses a call (an AGI failure, or a call that left no
hopper), then halves the gap to the last good rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol

from bench import admission
from bench.cpu import sample
from bench.dataset import team_id
from bench.exchange import Exchange
from bench.report import MaxRate, Probe, agi_failures, progress
from bench.steady import Steady

# No greeting and no menu (the harness's hours are open around the clock): the IVR does
# its real look-ups (hours, announcements, the caller's open hoppers) and routes at once, so
# the Bereik row measures the handler, not a prompt's playing time.
EXTRA_TOML = """
[menu]
greeting = ""
"""
# For the max rate through IVR → team → hopper: key 1 is a team with no members, so the
# team handler finds nobody present and the hopper handler offers the callback.
# Calls on the hopper path last about 14 s (menu, callback offer, the question's silence,
# goodbye): a minute at a fixed rate levels off and leaves most of it as steady window. A
# 5 s probe ends before its first calls do and overstates the rate the path sustains (it
# found 20/s that did not hold a minute), so every probe of the search is a minute long.
STEADY_SECONDS = 60.0
QUICK_PROBE_SECONDS = 4.0
FIRST_RATE = 8.0
RESOLUTION = 0.15  # the search stops when the gap to the first failing rate is this small
HOPPER_MENU_TOML = """
[menu]
greeting = ""
timeout_seconds = 2

[[menu.options]]
key = "1"
label = "vergunningen"
team = "{team}"
"""


class Rig(Protocol):
    """What the search needs of the bench (bench.run.Bench)."""

    quick: bool
    exchange: Exchange
    probes: int

    @property
    def asterisk_pid(self) -> int: ...

    @property
    def serve_pid(self) -> int: ...

    def metrics(self) -> str: ...

    def profile(self, label: str) -> contextlib.AbstractContextManager[None]: ...

    async def run_steady(
        self,
        number: str,
        rate: float,
        seconds: float,
        hold_ms: int,
        keys: str = "",
        caller: str = "0612345678",
        pids: dict[str, int] | None = None,
    ) -> tuple[int, int, int, Steady]: ...


async def max_rate(rig: Rig) -> MaxRate:
    """The highest rate whose probe held: no failed call, and (full mode) calls in progress
    levelled off with the check rate × CPU/call within HELD_WITHIN of the cores measured.
    Its figures come from that probe's steady window."""
    result = MaxRate()
    hopper_path = await _to_hopper_path(rig)
    if hopper_path:
        result.path = "14070 → IVR key 1 → team (nobody present) → hopper"
    else:
        result.note = "IVR → team → hopper did not work in this tree; measured IVR → KCC"
    seconds = QUICK_PROBE_SECONDS if rig.quick else STEADY_SECONDS
    good, bad = 0.0, None
    # The quick run (CI's smoke test) probes once, at its cap: every row is printed, no
    # figure is kept, and each probe waits out its calls' half a minute of prompts.
    rate = 10.0 if rig.quick else FIRST_RATE
    limit = 10.0 if rig.quick else 400.0
    probes = 1 if rig.quick else 6
    for _ in range(probes):
        probe = await _measured_probe(rig, rate, seconds, hopper_path)
        result.probes.append(probe)
        progress(f"  max rate probe {rate:>5.0f}/s  {probe.summary()}")
        if probe.held(required_steady=not rig.quick):
            good = rate
            result.take(probe)
        else:
            bad = rate
        if bad is None:
            if rate >= limit:
                result.note += f" not limited up to {limit:.0f}/s (the search's cap)"
                break
            rate = min(limit, rate * 2)
        else:
            if bad - good <= max(2.0, good * RESOLUTION):
                break
            rate = round((good + bad) / 2)
        await asyncio.sleep(1)
    return result


async def _measured_probe(rig: Rig, rate: float, seconds: float, hopper_path: bool) -> Probe:
    """One fixed-rate run with its failures counted the bench's way and its CPU sampled
    over the whole run (for runs too short to level off) and over the steady window."""
    before = rig.metrics()
    hoppers = _hoppers(rig) if hopper_path else 0
    pids = {"asterisk": rig.asterisk_pid, "serve": rig.serve_pid}
    whole = {name: sample(pid) for name, pid in pids.items()}
    with rig.profile(f"hopper-path-{rate:.0f}"):
        _, placed, failed, steady = await _probe(rig, rate, seconds, hopper_path, pids)
    whole = {name: sample(pid) - whole[name] for name, pid in pids.items()}
    failed += agi_failures(before, rig.metrics())
    if hopper_path:
        # Every call must have left its hopper: one missing is a failed call.
        failed += max(0, placed - (_hoppers(rig) - hoppers))
    return Probe(rate, placed, failed, steady, whole)


async def _probe(
    rig: Rig, rate: float, seconds: float, hopper_path: bool, pids: dict[str, int] | None = None
) -> tuple[int, int, int, Steady]:
    number = rig.exchange.config.exchange.main_number
    if not hopper_path:
        return await rig.run_steady(number, rate, seconds, hold_ms=500, pids=pids)
    # Key 1 chooses the team in the menu; the second 1 confirms the callback offer.
    # A caller number of its own per call ([call_number] is sipp's), and per probe:
    # a second call from one number is a repeat of its open hopper, not a new one.
    rig.probes += 1
    return await rig.run_steady(
        number,
        rate,
        seconds,
        hold_ms=30_000,
        keys="11",
        # 0612 + probe + 0000 + n: 10 digits and more, a number the hopper accepts.
        caller=f"0612{rig.probes % 100:02d}0000[call_number]",
        pids=pids,
    )


async def _counts(
    probe: Coroutine[Any, Any, tuple[int, int, int, Steady]],
) -> tuple[int, int, int]:
    calls, placed, failed, _ = await probe
    return calls, placed, failed


def _hoppers(rig: Rig) -> int:
    rows = rig.exchange.rows(
        "SELECT count(*) AS n FROM hoppers WHERE team_id = :team AND reason = :reason",
        team=team_id(0),
        reason="nobody_present",
    )
    return int(rows[0].n)


async def _to_hopper_path(rig: Rig) -> bool:
    """Give the menu a key for a team with no members, restart serve, try one call."""
    ex = rig.exchange
    text = ex.config_path.read_text()
    ex.config_path.write_text(text.replace(EXTRA_TOML, HOPPER_MENU_TOML.format(team=team_id(0)), 1))
    ex.stop_serve()
    ex.start_serve()
    hoppers = _hoppers(rig)
    try:
        # The first call also makes the menu's and the offer's prompts (TTS, cached).
        await _probe(rig, 1, 1, hopper_path=True)
    except Exception as exc:  # any failure: fall back to the KCC path
        progress(f"  hopper path: {exc}")
    if _hoppers(rig) > hoppers:
        return True
    progress("  hopper path: the test call made no hopper; measuring IVR → KCC instead")
    ex.config_path.write_text(text)
    ex.stop_serve()
    ex.start_serve()
    return False


async def overload(rig: Rig, best: MaxRate) -> admission.Overload:
    """Calls at twice the sustained maximum; what admitted and refused callers get."""
    if not best.rate or "hopper" not in best.path:
        return admission.Overload(note="no sustained maximum on the hopper path to double")
    row = await admission.overload(
        2 * best.rate,
        2.0 if rig.quick else 10.0,
        rig.exchange.host_instance / "log" / "full.log",
        lambda rate, seconds: _counts(_probe(rig, rate, seconds, hopper_path=True)),
        lambda: _refusals(rig),
    )
    progress(
        f"  overload {row.rate:.0f}/s  placed {row.placed}  admitted {row.admitted}  "
        f"refused {row.refused}"
    )
    return row


def _refusals(rig: Rig) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in rig.metrics().splitlines()
        if line.startswith("bereik_agi_refused_total{")
    )
