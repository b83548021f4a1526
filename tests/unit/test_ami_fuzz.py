"""Property tests of our AMI client's framing (cti/ami/client.py `_Protocol.data_received`).

TCP gives no message boundaries: Asterisk's events arrive cut at any byte, a multi-byte
UTF-8 character (a caller name such as "Zoë" or "Jörg") included. Whatever the cuts, the
events that come out must be exactly the ones that went in, and no byte stream, however
broken, may raise out of data_received (that would kill the connection and every event
after it) or leave the framing unable to read the next whole event.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from cti.ami.client import _Protocol

EOL = "\r\n"


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Factory:
    """Stands in for the manager: collects what the protocol dispatches."""

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


def _protocol() -> tuple[_Protocol, _Factory]:
    protocol = _Protocol()
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    factory = _Factory()
    protocol.factory = factory
    return protocol, factory


# A whole event after whatever came before: the blank line first ends any block left open.
SENTINEL = b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1795978677.42\r\n\r\n"


def _still_reads_events(protocol: _Protocol, factory: _Factory) -> None:
    """After any input, the next whole event comes out, and the connection is open unless
    Asterisk said it shuts down (a Shutdown event): input that data_received swallowed (or
    that broke its framing) fails here, not silently."""
    shut_down = any(e.get("Event") == "Shutdown" for e in factory.events)
    before = len(factory.events)
    protocol.data_received(SENTINEL)
    assert len(factory.events) > before, "the event after the input did not come out"
    last = {k: v for k, v in factory.events[-1].items() if k != "content"}
    assert last == {"Event": "Hangup", "Uniqueid": "1795978677.42"}
    assert protocol.transport.closed == shut_down
    assert factory.lost == (1 if shut_down else 0)


def _feed(data: bytes, cuts: list[int]) -> list[dict[str, str]]:
    protocol, factory = _protocol()
    previous = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        protocol.data_received(data[previous:cut])
        previous = cut
    protocol.data_received(data[previous:])
    # panoramisk adds the body of a "Response: Follows" as "content"; events have none.
    return [{k: v for k, v in event.items() if k != "content"} for event in factory.events]


header_names = st.sampled_from(["Channel", "CallerIDName", "CallerIDNum", "Uniqueid", "Exten"])
# Values as Asterisk sends them: any text but the line break, leading/trailing space trimmed
# (panoramisk strips each message block).
header_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
    max_size=40,
).map(str.strip)
events = st.lists(
    st.tuples(
        st.sampled_from(["Newchannel", "DialBegin", "Hangup", "UserEvent"]),
        st.dictionaries(header_names, header_values, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


def _wire(batch: list[tuple[str, dict[str, str]]]) -> bytes:
    blocks = []
    for name, headers in batch:
        lines = [f"Event: {name}", *(f"{key}: {value}" for key, value in headers.items())]
        blocks.append(EOL.join(lines) + EOL + EOL)
    return "".join(blocks).encode("utf-8")


@given(events, st.lists(st.integers(0, 10_000), max_size=20))
def test_events_cut_at_any_bytes_come_out_exactly_as_sent(
    batch: list[tuple[str, dict[str, str]]], cuts: list[int]
) -> None:
    data = _wire(batch)
    received = _feed(data, cuts)
    expected = [{"Event": name, **headers} for name, headers in batch]
    # A header whose value is empty after stripping is the one form that loses its ": ".
    assert [_non_empty(e) for e in received] == [_non_empty(e) for e in expected]


def _non_empty(event: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in event.items() if v}


def test_a_caller_name_split_inside_a_utf8_character_survives() -> None:
    data = _wire([("Newchannel", {"CallerIDName": "Zoë Jörg €"})])
    cut = data.index("ë".encode()) + 1  # between the two bytes of ë
    assert _feed(data, [cut]) == [{"Event": "Newchannel", "CallerIDName": "Zoë Jörg €"}]


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_any_bytes_in_any_pieces_never_raise_and_the_next_event_comes_out(
    pieces: list[bytes],
) -> None:
    protocol, factory = _protocol()
    for piece in pieces:
        protocol.data_received(piece)
    _still_reads_events(protocol, factory)


@given(
    st.lists(
        st.sampled_from(
            [
                b"Event: Hangup\r\n",
                b"\r\n",
                b"\xff\xfe",
                b"Response: Fail",
                b": ",
                b"Event: Shutdown\r\n\r\n",
                b"\r",
                b"\xc3",
            ]
        ),
        max_size=60,
    )
)
def test_fragments_of_the_format_never_raise_and_the_next_event_comes_out(
    pieces: list[bytes],
) -> None:
    protocol, factory = _protocol()
    for piece in pieces:
        protocol.data_received(piece)
    _still_reads_events(protocol, factory)


@settings(max_examples=5, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_a_megabyte_without_a_blank_line_is_handled_without_spinning(seed: bytes) -> None:
    """A peer that never ends its block must cost linear-ish time, not hang the loop."""
    protocol, factory = _protocol()
    chunk = (seed.replace(b"\r", b"").replace(b"\n", b"") * (4096 // len(seed) + 1))[:4096]
    started = time.perf_counter()
    for _ in range(256):
        protocol.data_received(chunk)
    protocol.data_received(b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1.2\r\n\r\n")
    assert time.perf_counter() - started < 2.0
    assert factory.events[-1]["Uniqueid"] == "1.2"
    _still_reads_events(protocol, factory)


STREAM = Path(__file__).resolve().parents[1] / "e2e" / "data" / "ami_stream.txt"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 200_000), max_size=40))
def test_a_recorded_stream_cut_anywhere_gives_panoramisks_events_header_for_header(
    cuts: list[int],
) -> None:
    data = STREAM.read_bytes()
    whole = [Message.from_line(block.strip()) for block in data.decode().split(EOL + EOL)[:-1]]
    expected = [m for m in whole if m is not None and "event" in m]
    protocol, factory = _protocol()
    previous = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        protocol.data_received(data[previous:cut])
        previous = cut
    protocol.data_received(data[previous:])
    assert len(factory.events) == len(expected) > 100
    for got, want in zip(factory.events, expected, strict=True):
        for name in want:
            assert got.get(name) == want.get(name), name
        assert dict(got.items()) == dict(want.items())
