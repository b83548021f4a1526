"""The maximum sustained rate of a call path: one search over call rates, per path.

The search doubles the rate until a probe loses a call (sipp failed it, a handler failed
or was refused, or the call left less than its path promises: a hopper, an agent's answer,
a caller counted as saved by the announcement), then halves the gap to the last good rate.
A path (`Path`) says what the callers dial and do and what each call must leave; the
search is the same for every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from bench import admission
from bench.cpu import sample
from bench.dataset import team_id
from bench.exchange import REPO, Exchange, until
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
RESOLUTION = 0.15  # the search stops when the gap to the first failing rate is this small
PROBES = 6  # at most, per path: 8, 16, 32, then three halvings
LIMIT = 400.0  # the search's cap
PAUSE_SECONDS = 1.0  # between probes: the last one's stragglers gone
# What each call left is written when it ends (the AMI listener's batches): counted for
# this long after the last channel is gone before a missing one counts as a failed call.
SETTLE_SECONDS = 10.0
HOPPER_MENU_TOML = """
[menu]
greeting = ""
timeout_seconds = 2

[[menu.options]]
key = "1"
label = "vergunningen"
team = "{team}"
"""
# The outage message of the announcement path, as an operator's recording: a fixed length,
# so the callers' hold can be set to hear all of it (a caller who hangs up while it plays
# has not heard it, and is no saved call).
ANNOUNCEMENT_SECONDS = 3


class Rig(Protocol):
    """What the search needs of the bench (bench.run.Bench)."""

    quick: bool
    exchange: Exchange
    probes: int  # probes placed so far (the own numbers' part)
    max_probes: int  # the search's probes per path, at most

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


def _count(rig: Rig, sql: str, **params: Any) -> int:
    return int(rig.exchange.rows(sql, **params)[0].n)


def _hoppers(rig: Rig) -> int:
    return _count(
        rig,
        "SELECT count(*) AS n FROM hoppers WHERE team_id = :team AND reason = :reason",
        team=team_id(0),
        reason="nobody_present",
    )


def _answered(rig: Rig) -> int:
    return _count(rig, "SELECT count(*) AS n FROM calls WHERE outcome = 'answered_kcc'")


def _saved(rig: Rig) -> int:
    return _count(
        rig,
        "SELECT count(*) AS n FROM announcement_hearings "
        "WHERE item LIKE 'announcement:%' AND result = 'saved'",
    )


@dataclass(frozen=True)
class Path:
    """One call path the search is run on: what its callers do, what each call leaves."""

    key: str  # its name for --rows
    label: str  # its row in the report
    profile: str  # the py-spy file's name, before the rate
    first_rate: float
    hold_ms: int  # the caller stays this long after Asterisk answers, unless hung up on
    leaves: Callable[[Rig], int]  # a count each call of the path adds one to
    keys: str = ""
    # A caller number of its own per call and per probe, where the path keeps state per
    # number (a second call from one number is a repeat of its open hopper, not a new one).
    own_numbers: bool = False
    quick_rate: float = 5.0  # --quick: one probe at this rate, QUICK_SECONDS long
    quick_seconds: float = 2.0


# The cheapest real path through the IVR: 14070, no greeting and no menu, so the handler
# does its look-ups and routes to the KCC at once; the ring-all KCC rings the bench's agent
# phone 2001 (a sipp phone that answers after 100 ms and takes any number of calls); the
# caller hangs up 2 s after Asterisk answered. Each call must be answered by the agent
# before that: the IVR and the ring have 1.9 s, so only an exchange falling behind fails it.
IVR = Path(
    "max-ivr",
    "14070 → IVR → KCC (ring-all) → agent answers",
    "ivr-path",
    first_rate=16.0,
    hold_ms=2000,
    leaves=_answered,
)
# Key 1 chooses the team in the menu; the second 1 confirms the callback offer.
HOPPER = Path(
    "max-hopper",
    "14070 → IVR key 1 → team (nobody present) → hopper",
    "hopper-path",
    first_rate=8.0,
    hold_ms=30_000,
    leaves=_hoppers,
    keys="11",
    own_numbers=True,
    quick_rate=10.0,
    quick_seconds=4.0,
)
# The KCC as a waiting line (bench/kcc_line.py makes its exchange and agents).
LINE = Path(
    "max-line",
    "14070 → IVR → KCC waiting line → agent answers",
    "line-path",
    first_rate=8.0,
    hold_ms=20_000,  # the agent hangs up first (bench/kcc_line.py TALK_MS)
    leaves=_answered,
    quick_rate=2.0,
)
# An outage announced to every caller of 14070: the caller hears it and hangs up in the
# menu that follows, the way the announcement saves a call (docs/voice.md, "what an
# announcement saves": the listener stores the hearing as saved). The hold is the message
# and a second and a half of the menu's prompt: long enough to have heard it all when the
# exchange keeps up, too short to reach a person.
ANNOUNCEMENT = Path(
    "max-announce",
    "14070 → outage announcement → caller hangs up",
    "announcement-path",
    first_rate=16.0,
    hold_ms=ANNOUNCEMENT_SECONDS * 1000 + 1500,
    leaves=_saved,
)
PATHS = {path.key: path for path in (IVR, HOPPER, LINE, ANNOUNCEMENT)}


async def max_rate(rig: Rig, path: Path) -> MaxRate:
    """The highest rate whose probe held: no failed call, and (full mode) calls in progress
    levelled off with the check rate × CPU/call within HELD_WITHIN of the cores measured.
    Its figures come from that probe's steady window."""
    result = MaxRate(path=path.label)
    good, bad = 0.0, None
    # The quick run (CI's smoke test) probes once per path, briefly: every row is printed,
    # no figure is kept.
    rate = path.quick_rate if rig.quick else path.first_rate
    seconds = path.quick_seconds if rig.quick else STEADY_SECONDS
    for _ in range(1 if rig.quick else rig.max_probes):
        if result.probes:
            await asyncio.sleep(PAUSE_SECONDS)
        probe = await measured_probe(rig, path, rate, seconds)
        result.probes.append(probe)
        progress(f"  {path.key} probe {rate:>5.0f}/s  {probe.summary()}")
        if probe.held(required_steady=not rig.quick):
            good = rate
            result.take(probe)
        else:
            bad = rate
        if bad is None:
            if rate >= LIMIT:
                result.note += f" not limited up to {LIMIT:.0f}/s (the search's cap)"
                break
            rate = min(LIMIT, rate * 2)
        else:
            if bad - good <= max(2.0, good * RESOLUTION):
                break
            rate = round((good + bad) / 2)
    return result


async def measured_probe(rig: Rig, path: Path, rate: float, seconds: float) -> Probe:
    """One fixed-rate run with its failures counted the bench's way and its CPU sampled
    over the whole run (for runs too short to level off) and over the steady window."""
    before = rig.metrics()
    left = path.leaves(rig)
    pids = {"asterisk": rig.asterisk_pid, "serve": rig.serve_pid}
    whole = {name: sample(pid) for name, pid in pids.items()}
    with rig.profile(f"{path.profile}-{rate:.0f}"):
        _, placed, failed, steady = await _probe(rig, path, rate, seconds, pids)
    whole = {name: sample(pid) - whole[name] for name, pid in pids.items()}
    failed += agi_failures(before, rig.metrics())
    # Every call must have left what its path promises: one missing is a failed call.
    failed += max(0, placed - await _left_since(rig, path, left, placed))
    return Probe(rate, placed, failed, steady, whole)


async def _left_since(rig: Rig, path: Path, before: int, placed: int) -> int:
    with contextlib.suppress(AssertionError):  # counted as it is, if not all there
        await until(lambda: path.leaves(rig) - before >= placed, timeout=SETTLE_SECONDS)
    return path.leaves(rig) - before


async def _probe(
    rig: Rig, path: Path, rate: float, seconds: float, pids: dict[str, int] | None = None
) -> tuple[int, int, int, Steady]:
    caller = "0612345678"
    if path.own_numbers:
        rig.probes += 1
        # 0612 + probe + 0000 + n: 10 digits and more, a number the hopper accepts.
        caller = f"0612{rig.probes % 100:02d}0000[call_number]"
    return await rig.run_steady(
        rig.exchange.config.exchange.main_number,
        rate,
        seconds,
        hold_ms=path.hold_ms,
        keys=path.keys,
        caller=caller,
        pids=pids,
    )


async def _counts(
    probe: Coroutine[Any, Any, tuple[int, int, int, Steady]],
) -> tuple[int, int, int]:
    calls, placed, failed, _ = await probe
    return calls, placed, failed


def use_menu(rig: Rig) -> None:
    """Give the menu a key for a team with no members and restart serve (once)."""
    ex = rig.exchange
    text = ex.config_path.read_text()
    if "[[menu.options]]" in text:
        return
    ex.config_path.write_text(text.replace(EXTRA_TOML, HOPPER_MENU_TOML.format(team=team_id(0)), 1))
    ex.stop_serve()
    ex.start_serve()


async def to_hopper_path(rig: Rig) -> bool:
    """The menu with the team of nobody; one call to try it. False when it made no hopper."""
    use_menu(rig)
    hoppers = _hoppers(rig)
    try:
        # The first call also makes the menu's and the offer's prompts (TTS, cached).
        await _probe(rig, HOPPER, 1, 1)
    except Exception as exc:  # any failure: the path is reported as not measured
        progress(f"  hopper path: {exc}")
    if _hoppers(rig) > hoppers:
        return True
    progress("  hopper path: the test call made no hopper; not measured")
    return False


def to_announcement_path(rig: Rig) -> None:
    """An outage message for every caller, put live through the operator's command, and
    the menu after it (without one the IVR would route the caller to the KCC at once).

    The announcement is left live: this path comes last on the bench's exchange."""
    ex = rig.exchange
    use_menu(rig)
    audio = ex.workdir / "storing.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(audio), "synth",
         str(ANNOUNCEMENT_SECONDS), "sine", "440", "vol", "0.1"],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "bereik", "announce", "--audio", str(audio), "--kind", "outage",
         "--config", str(ex.config_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )  # fmt: skip


async def overload(rig: Rig, best: MaxRate) -> admission.Overload:
    """Calls at twice the sustained maximum; what admitted and refused callers get."""
    if not best.rate or best.path != HOPPER.label:
        return admission.Overload(note="no sustained maximum on the hopper path to double")
    row = await admission.overload(
        2 * best.rate,
        2.0 if rig.quick else 10.0,
        rig.exchange.host_instance / "log" / "full.log",
        lambda rate, seconds: _counts(_probe(rig, HOPPER, rate, seconds)),
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
