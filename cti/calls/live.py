"""The KCC agent's live call: AMI events -> the agent's browser (server-sent events).

An AMI subscriber keeps, per extension, the call that rings or is answered there, from
`DialBegin`/`DialEnd`/`BridgeEnter`/`Hangup` whose channel is `PJSIP/<extension>-...`. Each
change is pushed to that extension's open `/events` streams at once (the bus hands us the
event; we only update a dict and put into queues, so the bus is never held up).

The same module serves the agent's actions on that call: transfer to a team (AMI
`BlindTransfer` of the agent's channel: the caller goes to the team number in
`from-internal`, the same team logic as a transfer from the phone), register the question
category, and create a hopper with a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cti.ami.channels import extension_of

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
CLOSE: dict[str, Any] = {"close": True}  # put in a listener's queue: end that stream


@dataclass
class AgentCall:
    extension: str
    channel: str  # the agent's channel (PJSIP/2001-...)
    caller: str
    caller_name: str
    caller_channel: str
    linkedid: str  # the uniqueid of the caller's first channel: the calls row
    state: str = "ringing"  # ringing answered ended
    since: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LiveCalls:
    """Which call is at which extension, and who is listening for it."""

    def __init__(self) -> None:
        self.calls: dict[str, AgentCall] = {}
        self.listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    def listen(self, extension: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self.listeners.setdefault(extension, set()).add(queue)
        return queue

    def unlisten(self, extension: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.listeners.get(extension, set()).discard(queue)

    def close(self) -> None:
        """Ends every open stream (shutdown), so the server need not wait for browsers."""
        for queues in self.listeners.values():
            for queue in list(queues):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(CLOSE)

    def _push(self, call: AgentCall) -> None:
        for queue in list(self.listeners.get(call.extension, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck browser misses an update
                queue.put_nowait(call.as_json())

    def handle(self, event: Any) -> None:
        name = event.get("Event", "")
        if name == "DialBegin":
            extension = extension_of(str(event.get("DestChannel", "")))
            if extension:
                new = AgentCall(
                    extension=extension,
                    channel=str(event["DestChannel"]),
                    caller=str(event.get("CallerIDNum", "")),
                    caller_name=str(event.get("CallerIDName", "")),
                    caller_channel=str(event.get("Channel", "")),
                    linkedid=str(event.get("Linkedid") or event.get("Uniqueid", "")),
                )
                self.calls[new.extension] = new
                self._push(new)
            return
        call: AgentCall | None = None
        if name == "DialEnd":
            call = self._by_channel(str(event.get("DestChannel", "")))
            if call is not None:
                if event.get("DialStatus") == "ANSWER":
                    call.state = "answered"
                    call.since = time.time()
                else:
                    self._end(call)
                    return
                self._push(call)
        elif name == "BridgeEnter":
            call = self._by_channel(str(event.get("Channel", "")))
            if call is not None and call.state != "answered":
                call.state = "answered"
                self._push(call)
        elif name == "Hangup":
            call = self._by_channel(str(event.get("Channel", "")))
            if call is not None:
                self._end(call)

    def _by_channel(self, channel: str) -> AgentCall | None:
        call = self.calls.get(extension_of(channel))
        return call if call is not None and call.channel == channel else None

    def _end(self, call: AgentCall) -> None:
        call.state = "ended"
        self.calls.pop(call.extension, None)
        self._push(call)


# --- HTTP ----------------------------------------------------------------------------------
