"""The KCC agent's live call: the call tracker's transitions -> the agent's browser (SSE).

The call tracker (cti/calls/tracker.py) follows every call from the AMI events and reports
each phone's part in it (`AgentLeg`: ringing, answered, ended); this board keeps, per
extension, the call at that phone and pushes each change to the extension's open `/events`
streams at once (a dict update per stream: the event bus is never held up). A stream that
falls behind is not dropped from: it gets the newest state of each call when it catches up
(`Latest`), so a slow browser may skip "ringing" but always sees "answered" and "ended".
The agent's actions on the call are in cti/calls/http.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cti.ami.channels import VHOLD_PLACEHOLDER
from cti.calls.tracker import AgentLeg

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
CLOSE: dict[str, Any] = {"close": True}  # put in a listener's queue: end that stream


@dataclass
class AgentCall:
    extension: str
    channel: str  # the agent's channel (PJSIP/2001-...)
    caller: str
    caller_name: str
    linkedid: str  # the uniqueid of the caller's first channel: the calls row
    state: str = "ringing"  # ringing answered ended
    since: float = field(default_factory=time.time)
    # A callback that kept the citizen's place in the KCC's line (cti/queue/vhold.py): when
    # the citizen first came to the line, so the popup shows the total wait.
    callback_since: float | None = None
    # That callback's virtual_holds row: the popup asks for the citizen's spoken question by
    # it, and while the call is at this phone its agent may hear that question.
    callback_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Latest:
    """One stream's pending updates: the newest state of each call not yet sent, in the
    order the calls first changed. Bounded by the calls at one extension, not by time: a
    browser that falls behind loses intermediate states, never the last one."""

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def put(self, key: str, state: dict[str, Any]) -> None:
        # A dict keeps a key's first position: a newer state replaces the unsent older one
        # where it stood, so calls stay in the order they first changed.
        self._pending[key] = state
        self._ready.set()

    async def get(self) -> dict[str, Any]:
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        key = next(iter(self._pending))
        return self._pending.pop(key)

    def qsize(self) -> int:
        return len(self._pending)


class LiveCalls:
    """Which call is at which extension, and who is listening for it."""

    def __init__(self) -> None:
        self.calls: dict[str, AgentCall] = {}
        self.listeners: dict[str, set[Latest]] = {}

    def listen(self, extension: str) -> Latest:
        stream = Latest()
        self.listeners.setdefault(extension, set()).add(stream)
        return stream

    def unlisten(self, extension: str, stream: Latest) -> None:
        self.listeners.get(extension, set()).discard(stream)

    def close(self) -> None:
        """Ends every open stream (shutdown), so the server need not wait for browsers."""
        for streams in self.listeners.values():
            for stream in list(streams):
                stream.put("", CLOSE)

    def callback_at(self, extension: str) -> int | None:
        """The virtual hold whose callback is ringing or in progress at this phone."""
        call = self.calls.get(extension) if extension else None
        return call.callback_id if call is not None else None

    def _push(self, call: AgentCall) -> None:
        for stream in list(self.listeners.get(call.extension, ())):
            stream.put(call.channel, call.as_json())

    def apply(self, leg: AgentLeg) -> None:
        """A transition of the call tracker: a phone rings, answers, or its part is over."""
        if leg.state == "ringing":
            new = AgentCall(
                extension=leg.extension,
                channel=leg.channel,
                caller=leg.caller,
                caller_name=leg.caller_name,
                linkedid=leg.call,
            )
            placeholder = VHOLD_PLACEHOLDER.match(leg.caller_channel)
            if placeholder:
                new.callback_since = float(placeholder["since"])
                new.callback_id = int(placeholder["id"])
            self.calls[new.extension] = new
            self._push(new)
            return
        call = self.calls.get(leg.extension)
        if call is None or call.channel != leg.channel:
            return
        if leg.state == "answered" and call.state != "answered":
            call.state = "answered"
            call.since = time.time()
            self._push(call)
        elif leg.state == "ended":
            self._end(call)

    def _end(self, call: AgentCall) -> None:
        call.state = "ended"
        self.calls.pop(call.extension, None)
        self._push(call)


# --- HTTP ----------------------------------------------------------------------------------
