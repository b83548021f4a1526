"""Bereik's AMI parser gives what panoramisk's gives, message for message and header for
header: an event read from its raw block (`event`) and any message taken line by line
(`parse`), whatever spelling a reader asks a header in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from panoramisk.message import Message

from cti.ami.message import EOL, AmiMessage, event, parse

STREAM = Path(__file__).resolve().parents[1] / "e2e" / "data" / "ami_stream.txt"


def _blocks() -> list[str]:
    return [block.strip() for block in STREAM.read_bytes().decode().split(EOL + EOL)]


def ours(block: str) -> AmiMessage | None:
    """As the AMI client reads a block: an event from its raw block, anything else whole."""
    return event(block) if block.startswith("Event: ") else parse(block)


def _names(block: str) -> list[str]:
    """Every header name of `block`, each in its own, lowered and upper spelling, and some
    that are not there (what a reader may ask)."""
    names = [line.partition(": ")[0] for line in block.split(EOL)]
    return [
        *names,
        *(name.lower() for name in names),
        *(name.upper() for name in names),
        "Missing",
        "content",
        "Content",
        "a: b",
        "",
    ]


def _same(block: str) -> None:
    mine, theirs = ours(block), Message.from_line(block)
    if theirs is None:
        assert mine is None, block
        return
    assert mine is not None, block
    # Each header read, in any spelling, before panoramisk's store is made and after.
    for name in _names(block):
        assert mine.get(name, "?") == theirs.get(name, "?"), (name, block)
        assert (name in mine) == (name in theirs), (name, block)
    assert dict(mine.items()) == dict(theirs.items()), block
    for name in _names(block):
        assert mine.get(name, "?") == theirs.get(name, "?"), (name, block)
    assert (mine.id, mine.action_id, mine.success, mine.content) == (
        theirs.id,
        theirs.action_id,
        theirs.success,
        theirs.content,
    )


def test_every_message_of_a_recorded_stream_reads_as_panoramisk_reads_it() -> None:
    blocks = _blocks()
    assert len(blocks) > 100
    for block in blocks:
        _same(block)


@pytest.mark.parametrize(
    "block",
    [
        "Response: Success\r\nActionID: 7\r\nMessage: Authentication accepted",
        "Response: Follows\r\nActionID: 8\r\nPrivilege: Command\r\nline one\nline two\r\n",
        "Response: Error\r\nActionID: 9\r\nMessage: Permission denied",
        "Event: AGIExecEnd\r\nResult: 200%20result%3D1%20\r\nCommandId: 42",
        "Event: AGIExecEnd\r\nRESULT: 200%20result%3D0",
        "Event: VarSet\r\nVariable: A=1\r\nVariable: B=2\r\nVariable: C=3",
        # A UserEvent's own Uniqueid beside the channel's: a list, as in panoramisk.
        "Event: UserEvent\r\nUniqueid: 1.0\r\nUserEvent: BereikRoute\r\nUniqueid: 1.0\r\nTeam: kcc",
        # The same name in two spellings: the last one's value.
        "Event: CEL\r\nLinkedID: 1.0\r\nLinkedid: 2.0",
        "Event: Newchannel\r\nnot a header\r\nChannel: PJSIP/2001-00000001",
        # The last header's empty value lost its space to the block's strip.
        "Event: CEL\r\nEventName: LINKEDID_END\r\nExtra:",
        "Event: Hangup\r\nExtra: \r\nUniqueid: 1.3",
        "Event: Hangup",
        "Event: Hangup\r\nContent: not the body\r\nValue: a: b: c",
        # A second Event header: a list (spelled so) or no message (spelled otherwise).
        "Event: Hangup\r\nEvent: Newchannel\r\nUniqueid: 1.1",
        "Event: Hangup\r\nEVENT: Newchannel\r\nUniqueid: 1.1",
        # Lowering this name's İ makes the text longer: read line by line instead.
        "Event: Newchannel\r\nCallerIDName: İlknur Öztürk\r\nUniqueid: 1.4",
        "Event: Newchannel\r\nCallerIDName: Zoë Jörg €\r\nUniqueid: 1.5",
        "Event: OriginateResponse\r\nActionID: cb-7\r\nResponse: Failure",
        "Asterisk Call Manager/11.0.0",
        "Ping: no event or response header",
    ],
)
def test_responses_bodies_quoted_results_repeated_headers_and_noise(block: str) -> None:
    _same(block)


def test_a_header_found_in_the_raw_block_is_read_without_the_whole_store() -> None:
    block = "Event: Hangup\r\nUniqueid: 1795873975.2\r\nLinkedid: 1795873974.0\r\nCause: 16"
    message = event(block)
    assert message is not None
    assert message.get("Uniqueid") == "1795873975.2"
    assert message.get("LINKEDID") == "1795873974.0"
    assert message["cause"] == "16" and message.cause == "16"
    assert message._built is None  # nothing read needed panoramisk's store
    with pytest.raises(KeyError):
        message["Missing"]
    assert list(message) == ["Event", "Uniqueid", "Linkedid", "Cause", "content"]


def test_a_header_set_on_a_message_is_read_back_in_any_spelling() -> None:
    message = event("Event: Hangup\r\nUniqueid: 1.2\r\nCause: 16")
    assert message is not None
    assert message.get("Cause") == "16"
    message["Cause"] = "17"
    message["Node"] = "node-a"
    assert (message.get("cause"), message.get("NODE"), message["Uniqueid"]) == (
        "17",
        "node-a",
        "1.2",
    )
    assert dict(message.items())["Node"] == "node-a"


def test_an_event_that_answers_an_action_is_told_apart_in_any_spelling() -> None:
    def answers(block: str) -> bool:
        message: Any = ours(block)
        return not message.answers_nothing()

    assert not answers("Event: Hangup\r\nUniqueid: 1.2")
    assert answers("Event: CoreShowChannel\r\nActionID: list-1\r\nUniqueid: 9.0")
    assert answers("Event: AGIExecEnd\r\nCommandId: 42")
    assert answers("Event: OriginateResponse\r\nactionid: cb-7")
    assert answers("Response: Success\r\nActionID: 7")
