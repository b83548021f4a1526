"""An agent on a call through one node is busy on every node (several nodes behind Kamailio).

app_queue on node B only sees node B's channels: an agent talking through node A looks
free there and would be offered B's next caller. So with [[nodes]], a queue member's
state interface is ``Custom:bereik-agent-<extension>`` (service.state_interface), and this
watcher of the call tracker's agent legs sets that custom device state on every node:
RINGING or INUSE while the phone rings or talks in any call Bereik follows, NOT_INUSE when
its last leg ends. Chosen over pausing the member on the other nodes: a pause is the
agent's own choice, shown on the screens and restored from the database, and must not be
confused with being on a call. On every (re)connect of a node, it is told every agent's
state as Bereik knows it: a custom state never set is UNKNOWN, and the queue's joinempty
would turn callers away from a line whose members are all "unknown".
"""

from __future__ import annotations

import asyncio
import logging

from cti.ami.client import AmiError
from cti.calls.lease import TrackingLease
from cti.calls.tracker import AgentLeg
from cti.queue import service
from cti.services import Services

log = logging.getLogger("bereik.queue.devicestate")


class SharedAgentStates:
    def __init__(self, services: Services, lease: TrackingLease | None = None) -> None:
        self.services = services
        self.lease = lease or TrackingLease.sole()
        self.agents = {m for line in services.config.waiting_lines() for m in line.members}
        self.legs: dict[str, dict[str, str]] = {}  # extension -> channel -> leg state
        self.pushed: dict[str, str] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def apply(self, leg: AgentLeg) -> None:
        if leg.extension not in self.agents:
            return
        legs = self.legs.setdefault(leg.extension, {})
        if leg.state == "ended":
            legs.pop(leg.channel, None)
        else:
            legs[leg.channel] = leg.state
        states = set(legs.values())
        wanted = "INUSE" if "answered" in states else "RINGING" if states else "NOT_INUSE"
        if self.pushed.get(leg.extension) != wanted:
            # A standby only keeps what it would set: `push_all` sets it if it takes over.
            self.pushed[leg.extension] = wanted
            if not self.lease.owned.is_set():
                return
            task = asyncio.create_task(self._push(leg.extension, wanted))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def push_all(self) -> None:
        """Every agent's state, to the node that (re)connected, or to every node when this
        process takes the tracking lease (the owner's duty, cti/calls/lease.py)."""
        for extension in sorted(self.agents):
            await self._push(extension, self.pushed.get(extension, "NOT_INUSE"))

    async def _push(self, extension: str, state: str) -> None:
        ami = self.services.ami
        if ami is None:
            return
        shared = service.state_interface(self.services, extension)
        try:
            # Setvar without a channel goes to every node, or in an AMI connect to the node
            # that connected (cti/ami/nodes.py).
            await ami.action(
                {"Action": "Setvar", "Variable": f"DEVICE_STATE({shared})", "Value": state}
            )
        except AmiError as exc:
            log.warning("agent %s's state %s not set on every node: %s", extension, state, exc)
