"""The KCC as a waiting line at its maximum sustained rate: the exchange and agents the
max-rate search (bench/maxrate.py, path LINE) runs on.

The KCC line needs `kcc.mode = "queue"` (its own dialplan and queues.conf, so an exchange
of its own) and agents signed in whose phones answer. One sipp phone answers for all of
them: every agent's phone registers with its own digest credentials and the same contact
port, so app_queue rings each agent as a member of its own (ringinuse = no: one call per
agent) and the one sipp process takes whichever calls come. Each agent answers after
RING_MS and hangs up after TALK_MS with no wrap-up, so AGENTS agents take about
AGENTS / (RING_MS + TALK_MS) calls a second: above the rates the machine sustains, so the
search finds the exchange's limit, not the agents'. The report says when a held rate comes
near the agents' limit.

The line's callers are 14070's with no greeting and no menu (the IVR routes them to the
KCC at once), on an empty database (as the queue row's exchanges).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from bench.exchange import Exchange, Phone, free_port
from bench.maxrate import EXTRA_TOML, LINE, Rig
from bench.maxrate import max_rate as search
from bench.report import MaxRate, progress
from dialplan.asterisk import Installation

RING_MS, TALK_MS = 100, 1000
AGENTS = {True: 4, False: 48}  # --quick, full
SIGN_IN_AT_ONCE = 12
# Wrap-up 0: an agent takes the next call at once (the bench measures the exchange, not the
# staffing). strict_order = false: several callers ring free agents at once. With it true
# (app_queue autofill = no) only the first caller in line rings an agent and the ones
# behind look again once a second, so the line's rate is bounded by its own order, far
# below what the machine sustains; a municipality with this many agents sets it false.
LINE_TOML = """
[queue]
wrapup_seconds = 0
agent_ring_seconds = 10
position_every_seconds = 30
strict_order = false
"""


class LineRig(Rig, Protocol):
    """What the line's search needs of the bench (bench.run.Bench): its Asterisk, and the
    search's rig measuring on another exchange meanwhile."""

    installation: Installation

    def on(self, exchange: Exchange) -> contextlib.AbstractContextManager[None]: ...


async def max_rate(bench: LineRig, workdir: Path) -> MaxRate:
    """The line's exchange (in `workdir`, made) with its agents signed in, then the
    max-rate search on it."""
    agents = [str(3001 + i) for i in range(AGENTS[bench.quick])]
    port = free_port()
    ex = Exchange(
        bench.installation,
        workdir,
        phones=[Phone(agent, port, f"Agent {agent}", registers=True) for agent in agents],
        kcc_agents=agents,
        kcc_toml='mode = "queue"',
        extra_toml=EXTRA_TOML + LINE_TOML,
    )
    try:
        ex.start_asterisk()
        ex.start_serve()
        ex.agent_phone(agents[0], ring_ms=RING_MS, talk_ms=TALK_MS)
        for agent in agents:
            ex.register(agent)
        signed = await _sign_in(ex, agents)
        progress(f"  KCC line: {signed} of {len(agents)} agents signed in")
        with bench.on(ex):
            found = await search(bench, LINE)
        capacity = signed * 1000 / (RING_MS + TALK_MS)
        if found.rate >= 0.8 * capacity:
            found.note += (
                f" near the agents' limit ({signed} agents, {RING_MS + TALK_MS} ms a call: "
                f"{capacity:.0f} calls/s)"
            )
        return found
    finally:
        ex.close()


async def _sign_in(ex: Exchange, agents: list[str]) -> int:
    """Each agent dials the sign-in code from their phone; how many are members after."""
    code = ex.config.queue.sign_in_code
    for first in range(0, len(agents), SIGN_IN_AT_ONCE):
        await asyncio.gather(
            *(
                # The exchange hangs up after the confirmation: the hold is an upper bound.
                ex.call(code, from_phone=agent, hold_ms=5000, timeout_s=30)
                for agent in agents[first : first + SIGN_IN_AT_ONCE]
            )
        )
    members = ex.cli("queue show kcc")
    return sum(f"PJSIP/{agent}" in members for agent in agents)
