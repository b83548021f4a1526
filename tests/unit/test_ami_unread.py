"""Events no subscriber reads are dropped by the AMI client unbuilt (cti/ami/client.py,
cti/ami/bus.py), and nothing else is: a response, an action's list of events, Shutdown
and every event a subscriber reads still come through; the call tracker gives the same
effects from a recorded stream with the skipping as without it."""

from __future__ import annotations

import asyncio
from typing import Any

from panoramisk.message import Message

from cti.ami.bus import EventBus, EventQueue, reads
from cti.ami.client import AmiClient, _Protocol
from cti.calls.listener import RESYNC_EVENT, CallListener
from cti.calls.tracker import TRACKED_EVENTS, Effect
from tests.support.ami_stream import STREAM, tracker

EOL = "\r\n"


class _Transport:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Factory:
    forgetable_actions: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.events: list[Message] = []
        self.awaiting_actions: list[Any] = []
        self.lost = 0

    def dispatch(self, message: Message) -> list[str]:
        self.events.append(message)
        return []

    def connection_lost(self, exc: Any) -> None:
        self.lost += 1


def _protocol(wanted: frozenset[str] | None) -> tuple[_Protocol, _Factory, list[int]]:
    protocol = _Protocol()
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    factory = _Factory()
    protocol.factory = factory
    protocol.wanted = lambda: wanted
    unread = [0]

    def count() -> None:
        unread[0] += 1

    protocol.on_unread = count
    return protocol, factory, unread


def _wire(*blocks: str) -> bytes:
    return "".join(block + EOL + EOL for block in blocks).encode()


def test_an_event_nobody_reads_is_dropped_and_counted_and_the_others_come_through() -> None:
    protocol, factory, unread = _protocol(frozenset({"Hangup"}))
    protocol.data_received(
        _wire(
            "Event: Cdr\r\nUniqueid: 1.0\r\nDisposition: ANSWERED",
            "Event: Hangup\r\nUniqueid: 1.0\r\nCause: 16",
            "Event: VarSet\r\nUniqueid: 1.0\r\nVariable: A=1",
        )
    )
    assert [e["Event"] for e in factory.events] == ["Hangup"]
    assert dict(factory.events[0].items()) == {
        "Event": "Hangup",
        "Uniqueid": "1.0",
        "Cause": "16",
        "content": "",
    }
    assert unread == [2]


def test_without_a_declared_set_every_event_is_built() -> None:
    protocol, factory, unread = _protocol(None)
    protocol.data_received(_wire("Event: Cdr\r\nUniqueid: 1.0", "Event: Hangup\r\nUniqueid: 1.0"))
    assert [e["Event"] for e in factory.events] == ["Cdr", "Hangup"]
    assert unread == [0]


def test_an_actions_answer_and_its_list_of_events_reach_the_action_though_nobody_reads_them() -> (
    None
):
    async def run() -> list[Message]:
        protocol, factory, _ = _protocol(frozenset({"Hangup"}))
        answer = protocol.send({"Action": "CoreShowChannels", "ActionID": "list-1"}, as_list=True)
        protocol.data_received(
            _wire(
                "Response: Success\r\nActionID: list-1\r\nEventList: start",
                "Event: CoreShowChannel\r\nActionID: list-1\r\nUniqueid: 9.0",
                "Event: CoreShowChannelsComplete\r\nActionID: list-1\r\nEventList: Complete",
            )
        )
        assert factory.events == []
        return list(await asyncio.wait_for(answer, 1))

    messages = asyncio.run(run())
    assert [m.get("Event") or m.get("Response") for m in messages] == [
        "Success",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
    ]


def test_an_event_with_an_action_id_and_shutdown_are_built_though_nobody_reads_them() -> None:
    protocol, factory, unread = _protocol(frozenset({"Hangup"}))
    # An OriginateResponse whose action was answered already: a subscriber may match it.
    protocol.data_received(
        _wire("Event: OriginateResponse\r\nActionID: cb-7\r\nResponse: Failure", "Event: Shutdown")
    )
    assert [e["Event"] for e in factory.events] == ["OriginateResponse", "Shutdown"]
    assert factory.lost == 1 and protocol.transport.closed
    assert unread == [0]


def test_the_bus_hands_each_part_only_what_it_reads_and_tells_the_client() -> None:
    seen: dict[str, list[str]] = {"tracker": [], "all": [], "callbacks": []}

    @reads("Newchannel", "Hangup")
    def tracker_part(event: Message) -> None:
        seen["tracker"].append(event["Event"])

    def every_event(event: Message) -> None:
        seen["all"].append(event["Event"])

    async def callbacks(event: Message) -> None:
        seen["callbacks"].append(event["Event"])

    queue = EventQueue()
    bus = EventBus(queue)
    assert queue.wanted == frozenset()  # nobody subscribed: nothing is read
    bus.subscribe(tracker_part)
    bus.subscribe(callbacks, events=["OriginateResponse", "Hangup"])
    assert queue.wanted == {"Newchannel", "Hangup", "OriginateResponse"}

    async def publish(*names: str) -> None:
        for name in names:
            await bus.publish(Message({"Event": name}))

    asyncio.run(publish("Newchannel", "Cdr", "Hangup", "OriginateResponse"))
    assert seen["tracker"] == ["Newchannel", "Hangup"]
    assert seen["callbacks"] == ["Hangup", "OriginateResponse"]
    bus.subscribe(every_event)
    assert queue.wanted is None  # one part reads everything: every event is built
    asyncio.run(publish("Cdr", "Hangup"))
    assert seen["all"] == ["Cdr", "Hangup"]
    assert seen["tracker"] == ["Newchannel", "Hangup", "Hangup"]
    assert bus.handled == 6


def test_the_client_reads_what_its_bus_wants() -> None:
    client = AmiClient("127.0.0.1", 5038, "u", "s")
    assert client._wanted() is None  # no bus yet: every event
    bus = EventBus(client.events)
    bus.subscribe(reads("Hangup")(lambda event: None))
    assert client._wanted() == {"Hangup"}


def test_the_listener_reads_the_tracked_events_and_its_resync_marker() -> None:
    bus = EventBus(EventQueue())
    bus.subscribe(CallListener.on_event)  # type: ignore[arg-type]  # as its bound method
    assert bus.wanted == TRACKED_EVENTS | {RESYNC_EVENT}
    assert {"Newchannel", "DialBegin", "DialEnd", "Hangup", "CEL", "UserEvent"} <= TRACKED_EVENTS
    assert "Cdr" not in TRACKED_EVENTS


def test_a_recorded_stream_gives_the_tracker_the_same_effects_with_the_skipping() -> None:
    data = STREAM.read_bytes()

    def effects(wanted: frozenset[str] | None) -> tuple[list[Effect], int, int]:
        protocol, factory, unread = _protocol(wanted)
        for start in range(0, len(data), 1000):
            protocol.data_received(data[start : start + 1000])
        t = tracker()
        out: list[Effect] = []
        for message in factory.events:
            out += t.feed(message)
        return out, len(factory.events), unread[0]

    everything, built_all, _ = effects(None)
    skipped, built, unread = effects(TRACKED_EVENTS | {RESYNC_EVENT})
    assert skipped == everything and len(everything) > 20
    assert unread > 0 and built + unread == built_all
