"""The one AMI client: our framing and parser (cti/ami/message.py), panoramisk's sending
and ActionID matching, inside our supervisor.

panoramisk 1.4 alone lacks what a telephone exchange needs: it does not raise on a failed
login, has no timeout on actions, never notices a missing Pong, reconnects at a fixed
interval, replays queued actions (an Originate twice!) after a reconnect, runs event
callbacks inline (one exception kills the connection) and drops a UTF-8 character split
across two reads. This module adds each of those; nothing else talks AMI. Its framing
reads every event Asterisk sends, so it is the cheap part of the path: an event nobody
reads is dropped from its first line, one that answers no action goes straight to the
queue, and an event's headers are found in its block when a subscriber reads them.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from cti.ami.bus import EventQueue
from cti.ami.message import EOL, AmiMessage, event, parse
from cti.store.faults import describe, until_stored

log = logging.getLogger("bereik.ami")

# The part that counts a malformed AMI message on bereik_ami_event_failures_total (the
# label the bus gives its subscribers' failures): it is skipped like a subscriber's event.
READER = "AMI reader"
# Events queued whether a subscriber reads them or not: panoramisk closes the connection
# on Shutdown (Asterisk is stopping), so it must be built.
ALWAYS_BUILT = frozenset({"Shutdown"})
_EVENT = "Event: "


class AmiError(Exception):
    pass


class AmiLoginError(AmiError):
    pass


class AmiNotConnected(AmiError):
    pass


class AmiTimeout(AmiError):
    pass


class AmiActionFailed(AmiError):
    def __init__(self, response: Message) -> None:
        super().__init__(response.get("Message", "action failed"))
        self.response = response


class AmiConnectDutyFailed(Exception):
    """A duty run on each connect (the calls' resync, the queue members' push) failed for a
    reason that is neither the store being down nor the connection. Not an AmiError on
    purpose: the reconnect loop does not swallow it, the supervisor shows the part down and
    connects again after its backoff, which runs every duty again."""


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with framing of our own: an incremental UTF-8 decoder, our
    parser, the events no subscriber reads skipped unbuilt, and an event that answers no
    action handed to the queue without panoramisk's matching."""

    version: str | None
    # Called once per message skipped as malformed (the client's counter).
    on_skipped: Callable[[], None] | None = None
    # The event names the bus's subscribers read, None for every event (EventQueue.wanted).
    wanted: Callable[[], frozenset[str] | None] = staticmethod(lambda: None)
    # Called once per event read and dropped unbuilt, no subscriber reading it (the count).
    on_unread: Callable[[], None] = staticmethod(lambda: None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # The text after the last blank line: the start of a message still arriving.
        self._rest = ""

    def data_received(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if self.version is None and text.startswith("Asterisk Call Manager/"):
            first, _, _ = text.partition(EOL)
            self.version = first.partition("/")[2].strip()
        if self._rest:
            text = self._rest + text
        blocks = text.split(EOL + EOL)
        self._rest = blocks.pop()
        wanted = self.wanted()
        for block in blocks:
            try:
                block = block.strip()
                if block.startswith(_EVENT):
                    if wanted is not None and _nobody_reads(block, wanted):
                        self.on_unread()
                        continue
                    message = event(block)
                else:
                    message = parse(block)
                if message is not None:
                    self.handle_message(message)
            except Exception:
                # Counted and skipped, by decision: neither the supervisor's (an exception
                # out of data_received makes asyncio close the connection, and every event
                # after it is lost) nor the store's (a block that does not parse is no work
                # item a replay could write). One malformed block (e.g. a repeated Event:
                # header makes its value a list) costs that message only, and the
                # operator sees it: bereik_ami_event_failures_total{subscriber="AMI reader"}
                # and the alert BereikAmiEventFailures, as for a subscriber's failure.
                log.exception("AMI message skipped: %r", block[:200])
                if self.on_skipped is not None:
                    self.on_skipped()

    def handle_message(self, message: AmiMessage) -> None:
        """panoramisk's, with its common case first: an event that answers no action (no
        ActionID, no CommandID) goes straight to the queue. Anything else (a response, an
        action's list of events) takes panoramisk's matching."""
        if not message.answers_nothing():
            super().handle_message(message)
            return
        if message.get("Event").lower() == "shutdown":
            self.connection_lost(message)
        self.factory.dispatch(message)


def _nobody_reads(block: str, wanted: frozenset[str]) -> bool:
    """Whether `block`, an event, is one that no subscriber reads and no action waits for:
    then it is dropped here, from its first line, without being built. The events of an
    action's answer (they carry its ActionID: CoreShowChannel, OriginateResponse) and
    Shutdown are built as before."""
    end = block.find(EOL)
    name = block[len(_EVENT) : end] if end >= 0 else block[len(_EVENT) :]
    if name in wanted or name in ALWAYS_BUILT:
        return False
    # Header names are case-insensitive to panoramisk's matching: so here.
    return "\nactionid:" not in block.lower()


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager with its own reconnecting and replaying switched off."""

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self._client._lost()

    async def send_awaiting_actions(self, *_: Any) -> None:
        # Never replay: an action sent before a reconnect may already have been carried out.
        self._client._fail_awaiting()

    def dispatch(self, event: Message) -> list[str]:
        self._client._enqueue(event)
        return []


OnConnected = Callable[[], Awaitable[None]]


class AmiClient:
    """Connects, logs in, pings, reconnects with backoff; events go to `self.events`."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        ping_interval: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 4.0,
        queue_size: int = 10_000,
        node: str = "",
    ) -> None:
        self.host, self.port, self.username, self.secret = host, port, username, secret
        # The Asterisk node's systemname when there are several (cti/ami/nodes.py).
        self.node = node
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        # The bus tells it which events its subscribers read (cti/ami/bus.py).
        self.events: asyncio.Queue[Message] = EventQueue(maxsize=queue_size)
        self.dropped_events = 0
        # Events read and dropped unbuilt, no subscriber reading them: with the events the
        # bus handled, what a bench or a test counts to know every event was taken in.
        self.unread = 0
        self.connected = False
        self.on_connected: list[OnConnected] = []
        self.on_state: list[Callable[[bool], None]] = []
        # Called once per event dropped because `events` was full (the metrics counter).
        self.on_dropped: list[Callable[[], None]] = []
        # Called once per malformed message skipped (the metrics counter).
        self.on_skipped: list[Callable[[], None]] = []
        self._manager: _Manager | None = None
        self._lost_event = asyncio.Event()
        self._connected_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Run the connection on a task of its own (a command-line tool, a bench); `bereik
        serve` runs `run` under its supervisor instead (`loops`)."""
        self._task = asyncio.create_task(self.run(), name="ami-connection")

    @property
    def part(self) -> str:
        """This connection's name as a supervised part (and on /healthz)."""
        return f"ami {self.node}" if self.node else "ami"

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The reconnect loop by its part name, for the supervisor (cti/supervisor.py)."""
        return {self.part: self.run}

    async def run(self) -> None:
        """Connect, log in, ping, reconnect with backoff, until cancelled. A fault the loop
        does not expect leaves it disconnected and raises: the supervisor restarts it."""
        try:
            await self._run()
        finally:
            self._disconnect()

    async def close(self) -> None:
        self._closing = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._disconnect()

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._connected_event.wait()

    async def action(self, action: dict[str, str], timeout: float | None = None) -> Message:
        """Send one action; return its response or raise AmiActionFailed/AmiTimeout."""
        responses = await self._send(action, False, timeout)
        response = responses if isinstance(responses, Message) else responses[0]
        if not response.success:
            raise AmiActionFailed(response)
        return response

    async def action_list(
        self, action: dict[str, str], timeout: float | None = None
    ) -> list[Message]:
        """Send an action answered by a list of events (CoreShowChannels and the like)."""
        responses = await self._send(action, True, timeout)
        return responses if isinstance(responses, list) else [responses]

    async def _send(self, action: dict[str, str], as_list: bool, timeout: float | None) -> Any:
        manager = self._manager
        if not self.connected or manager is None:
            raise AmiNotConnected(f"AMI not connected; {action.get('Action')} not sent")
        future = manager.send_action(dict(action), as_list=as_list)
        try:
            return await asyncio.wait_for(future, timeout or self.action_timeout)
        except TimeoutError:
            raise AmiTimeout(
                f"no answer to {action.get('Action')} within {timeout or self.action_timeout} s"
            ) from None

    async def _run(self) -> None:
        delay = self.backoff_min
        while not self._closing:
            try:
                await self._connect()
                delay = self.backoff_min
                await self._serve_connection()
            except asyncio.CancelledError:
                raise
            except AmiLoginError as exc:
                log.error("AMI login refused: %s", exc)
            except (OSError, AmiError) as exc:
                log.warning("AMI connection to %s:%s: %s", self.host, self.port, exc)
            self._disconnect()
            sleep = random.uniform(delay / 2, delay)  # jitter: many clients don't stampede
            log.info("AMI reconnecting in %.1f s", sleep)
            await asyncio.sleep(sleep)
            delay = min(delay * 2, self.backoff_max)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        manager = _Manager(self, host=self.host, port=self.port, loop=loop, ping_delay=3600)
        _transport, protocol = await asyncio.wait_for(
            loop.create_connection(_Protocol, self.host, self.port), self.action_timeout
        )
        protocol.factory = manager
        protocol.on_skipped = self._skipped
        protocol.wanted = self._wanted
        protocol.on_unread = self._count_unread
        protocol.log = log
        protocol.encoding = manager.encoding = "utf-8"
        manager.protocol = protocol
        manager.responses = protocol.responses
        manager._connected = True
        self._manager = manager
        self._lost_event.clear()
        login = manager.send_action(
            {"Action": "Login", "Username": self.username, "Secret": self.secret, "Events": "on"}
        )
        try:
            response = await asyncio.wait_for(login, self.action_timeout)
        except TimeoutError:
            raise AmiTimeout("no answer to Login") from None
        if not response.success:
            raise AmiLoginError(response.get("Message", "authentication failed"))
        self._set_connected(True)
        log.info("AMI connected to %s:%s", self.host, self.port)
        await run_connect_duties(self.on_connected, f"{self.host}:{self.port}")

    async def _serve_connection(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._lost_event.wait(), self.ping_interval)
                raise AmiError("connection lost")
            except TimeoutError:
                pass
            try:
                await self.action({"Action": "Ping"}, timeout=self.action_timeout)
            except AmiTimeout:
                raise AmiError("no Pong; reconnecting") from None

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            if connected:
                self._connected_event.set()
            else:
                self._connected_event.clear()
            for callback in self.on_state:
                callback(connected)

    def _disconnect(self) -> None:
        self._set_connected(False)
        manager, self._manager = self._manager, None
        if manager is not None:
            with contextlib.suppress(Exception):
                manager.close()
            self._fail_pending(manager)

    def _fail_pending(self, manager: _Manager) -> None:
        protocol = manager.protocol
        pending = list(getattr(protocol, "responses", {}).values()) + list(manager.awaiting_actions)
        manager.awaiting_actions.clear()
        for action in pending:
            if not action.future.done():
                action.future.set_exception(AmiNotConnected("AMI connection lost"))

    def _fail_awaiting(self) -> None:
        if self._manager is not None:
            self._fail_pending(self._manager)

    def _lost(self) -> None:
        self._lost_event.set()
        self._set_connected(False)

    def _enqueue(self, event: Message) -> None:
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            # Losing the oldest event beats blocking the socket reader (Asterisk would then
            # disconnect us at its writetimeout and we would lose far more).
            with contextlib.suppress(asyncio.QueueEmpty):
                self.events.get_nowait()
            self.events.put_nowait(event)
            self._dropped()

    def _dropped(self) -> None:
        self.dropped_events += 1
        if self.dropped_events == 1 or self.dropped_events % 1000 == 0:
            log.warning(
                "AMI event queue full (%d events): %d events dropped so far; figures and "
                "hoppers may be incomplete",
                self.events.maxsize,
                self.dropped_events,
            )
        # The metrics counter: nothing here that may fail, so nothing caught (a fault
        # would go up through the reader's guard, counted there as a skipped message).
        for callback in self.on_dropped:
            callback()

    def _count_unread(self) -> None:
        self.unread += 1

    def _wanted(self) -> frozenset[str] | None:
        """The events the bus reading `events` wants built; None (all) for a plain queue
        (several nodes share one: cti/ami/nodes.py)."""
        return getattr(self.events, "wanted", None)

    def _skipped(self) -> None:
        for callback in self.on_skipped:
            callback()


async def run_connect_duties(duties: list[OnConnected], where: str) -> None:
    """Run what must follow each connect (a resync, pushes of state), each by the store's
    policy: a store that is down is waited out, keeping the duty (cti/store/faults.py).
    AmiNotConnected (the connection went meanwhile) goes at once to the reconnect loop,
    whose next connect runs every duty again. A duty that fails otherwise does not keep
    the others from running; then the first such failure goes to the supervisor as
    AmiConnectDutyFailed, and its restart connects again and runs every duty again.
    Before, such a failure was logged and the duty waited for the next connect, perhaps
    days away, with the line's members not pushed."""
    failure: Exception | None = None
    for duty in duties:
        try:
            await until_stored(duty, what=f"an AMI connect's duty ({where})", logger=log)
        except AmiNotConnected:
            raise
        except AmiConnectDutyFailed as exc:  # a node's duties (cti/ami/nodes.py), logged
            failure = failure or exc
        except Exception as exc:  # the supervisor's, once the other duties ran
            log.exception(
                "AMI connect duty %s failed (%s)", getattr(duty, "__qualname__", duty), where
            )
            failure = failure or exc
    if isinstance(failure, AmiConnectDutyFailed):
        raise failure
    if failure is not None:
        raise AmiConnectDutyFailed(f"on connecting to {where}: {describe(failure)}") from failure
