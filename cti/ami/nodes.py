"""Several Asterisk nodes behind Kamailio, seen by the rest of Bereik as one AMI client.

Each node keeps its own AmiClient (own connection, login, pings, backoff); their events
go into one queue, so the bus, the call tracker and the screens see one exchange (the
nodes' systemnames keep the Uniqueids apart). Actions are routed by what they do:

* while a node's on-connected callbacks run (``node`` is then that node), everything
  goes to that node: the tracker's resync and the queue's restore are per node;
* queue membership and pause (Queue* actions) and a Setvar without a channel (a global,
  an agent's shared device state) go to every connected node, so an agent is a member,
  paused or busy alike everywhere;
* an Originate goes to one node that is connected and not drained, in turn;
* an action on a channel (Setvar, Redirect, Hangup ...) goes to the node that has it:
  tried on each connected node until one carries it out;
* a list action (CoreShowChannels, QueueStatus) is answered by all connected nodes.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable

from panoramisk.message import Message

from cti.ami.bus import EventQueue
from cti.ami.client import (
    AmiActionFailed,
    AmiClient,
    AmiNotConnected,
    OnConnected,
    run_connect_duties,
)

log = logging.getLogger("bereik.ami.nodes")

_connecting: contextvars.ContextVar[AmiClient | None] = contextvars.ContextVar(
    "bereik_ami_connecting", default=None
)
# Actions that set the queue's members: the same on every node.
BROADCAST_PREFIX = "Queue"
BROADCAST_EXCEPT = {"QueueStatus", "QueueSummary"}


class NoNodeAvailable(AmiNotConnected):
    pass


class AmiNodes:
    """One AmiClient per node behind one face; see the module docstring."""

    def __init__(self, clients: dict[str, AmiClient], queue_size: int = 10_000) -> None:
        self.clients = clients
        # Shared by the nodes' clients; the bus tells them through it what to build.
        self.events: asyncio.Queue[Message] = EventQueue(maxsize=queue_size)
        self.on_connected: list[OnConnected] = []
        self.on_state: list[Callable[[bool], None]] = []
        self.on_dropped: list[Callable[[], None]] = []
        self.on_skipped: list[Callable[[], None]] = []
        # Nodes taken out for new calls (`bereik node drain`); kept current by serve's
        # node-state worker from Kamailio.
        self.drained: set[str] = set()
        self._turn = itertools.cycle(sorted(clients))
        for client in clients.values():
            client.events = self.events
            client.on_connected.append(self._connected_callback(client))
            client.on_state.append(lambda _up: self._state_changed())
            client.on_dropped.append(self._dropped)
            client.on_skipped.append(self._skipped)

    # -- the AmiClient face ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return any(client.connected for client in self.clients.values())

    @property
    def node(self) -> str:
        """The node whose connect callbacks run now; "" outside them."""
        client = _connecting.get()
        return client.node if client is not None else ""

    # Where the events come from, as AmiClient says it (the call tracking lease's name):
    # the nodes together are one exchange, so one lease records all their calls.
    @property
    def host(self) -> str:
        return "nodes"

    @property
    def port(self) -> str:
        return ",".join(sorted(self.clients))

    @property
    def dropped_events(self) -> int:
        return sum(client.dropped_events for client in self.clients.values())

    def start(self) -> None:
        for client in self.clients.values():
            client.start()

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """Each node's reconnect loop by its part name ("ami <node>"), for the supervisor."""
        return {
            name: loop for client in self.clients.values() for name, loop in client.loops().items()
        }

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    async def wait_connected(self, timeout: float) -> None:
        """Until the first node is connected."""
        waits = [asyncio.create_task(c.wait_connected(timeout)) for c in self.clients.values()]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            await next(iter(done))
        finally:
            for wait in waits:
                wait.cancel()

    async def action(self, action: dict[str, str], timeout: float | None = None) -> Message:
        scoped = _connecting.get()
        if scoped is not None:
            return await scoped.action(action, timeout)
        name = action.get("Action", "")
        if name.startswith(BROADCAST_PREFIX) and name not in BROADCAST_EXCEPT:
            return await self._everywhere(action, timeout)
        if name == "Originate":
            return await self.for_originate().action(action, timeout)
        if name == "Setvar" and "Channel" not in action:
            return await self._everywhere(action, timeout)  # a global or a shared device state
        return await self._where_it_works(action, timeout)

    async def action_list(
        self, action: dict[str, str], timeout: float | None = None
    ) -> list[Message]:
        scoped = _connecting.get()
        if scoped is not None:
            return await scoped.action_list(action, timeout)
        answers = await asyncio.gather(
            *(client.action_list(action, timeout) for client in self._up()),
            return_exceptions=True,
        )
        lists = [answer for answer in answers if isinstance(answer, list)]
        if not lists:
            raise AmiNotConnected(f"no node answered {action.get('Action')}")
        return [message for answer in lists for message in answer]

    # -- routing -----------------------------------------------------------------------

    def _up(self) -> list[AmiClient]:
        return [client for client in self.clients.values() if client.connected]

    def for_originate(self) -> AmiClient:
        """The next node, in turn, that is connected and not drained."""
        for _ in range(len(self.clients)):
            client = self.clients[next(self._turn)]
            if client.connected and client.node not in self.drained:
                return client
        raise NoNodeAvailable("no node is up and undrained; nothing originated")

    def carrying(self, uniqueid: str) -> AmiClient:
        """The node that has the channel with this Uniqueid (its systemname is the prefix):
        where an action must run that joins a call in progress (ChanSpy on an agent's
        channel), drained or not, since the call is there."""
        client = self.clients.get(uniqueid.partition("-")[0])
        if client is None or not client.connected:
            raise NoNodeAvailable(f"the node carrying {uniqueid} is not connected")
        return client

    async def _everywhere(self, action: dict[str, str], timeout: float | None) -> Message:
        clients = self._up()
        if not clients:
            raise AmiNotConnected(f"no node connected; {action.get('Action')} not sent")
        answers = await asyncio.gather(
            *(client.action(action, timeout) for client in clients), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, AmiNotConnected):
                raise answer  # the caller decides (e.g. "Already there" is harmless)
        return next(answer for answer in answers if isinstance(answer, Message))

    async def _where_it_works(self, action: dict[str, str], timeout: float | None) -> Message:
        failure: Exception = AmiNotConnected(f"no node connected; {action.get('Action')} not sent")
        for client in self._up():
            try:
                return await client.action(action, timeout)
            except AmiActionFailed as exc:
                failure = exc  # not this node's channel: the next one may have it
        raise failure

    # -- callbacks ---------------------------------------------------------------------

    def _connected_callback(self, client: AmiClient) -> OnConnected:
        async def connected() -> None:
            token = _connecting.set(client)
            try:
                # By the same policy as one client's: a store that is down is waited out,
                # any other failure goes to the supervisor after the other duties ran, and
                # its restart of this node's connection runs them again.
                await run_connect_duties(self.on_connected, f"node {client.node}")
            finally:
                _connecting.reset(token)

        return connected

    def _state_changed(self) -> None:
        for callback in self.on_state:
            callback(self.connected)

    # The metrics counters: nothing here may fail, so nothing is caught (AmiClient's own).
    def _dropped(self) -> None:
        for callback in self.on_dropped:
            callback()

    def _skipped(self) -> None:
        for callback in self.on_skipped:
            callback()

    def nodes_up(self) -> Iterable[str]:
        return [client.node for client in self._up()]


# What Services.ami is: one Asterisk's client, or the nodes' face.
Ami = AmiClient | AmiNodes
