"""Bereik's AMI parser gives what panoramisk's gives, message for message."""

from __future__ import annotations

from pathlib import Path

import pytest
from panoramisk.message import Message

from cti.ami.message import EOL, parse

STREAM = Path(__file__).resolve().parents[1] / "e2e" / "data" / "ami_stream.txt"


def _blocks() -> list[str]:
    return [block.strip() for block in STREAM.read_bytes().decode().split(EOL + EOL)]


def test_every_message_of_a_recorded_stream_parses_as_panoramisk_parses_it() -> None:
    blocks = _blocks()
    assert len(blocks) > 100
    for block in blocks:
        ours, theirs = parse(block), Message.from_line(block)
        if theirs is None:
            assert ours is None, block
            continue
        assert ours is not None, block
        assert dict(ours.items()) == dict(theirs.items()), block
        assert (ours.id, ours.action_id, ours.success) == (
            theirs.id,
            theirs.action_id,
            theirs.success,
        )


@pytest.mark.parametrize(
    "block",
    [
        "Response: Success\r\nActionID: 7\r\nMessage: Authentication accepted",
        "Response: Follows\r\nActionID: 8\r\nPrivilege: Command\r\nline one\nline two\r\n",
        "Response: Error\r\nActionID: 9\r\nMessage: Permission denied",
        "Event: AGIExecEnd\r\nResult: 200%20result%3D1%20\r\nCommandId: 42",
        "Event: VarSet\r\nVariable: A=1\r\nVariable: B=2\r\nVariable: C=3",
        "Event: Newchannel\r\nnot a header\r\nChannel: PJSIP/2001-00000001",
        "Asterisk Call Manager/11.0.0",
        "Ping: no event or response header",
    ],
)
def test_responses_bodies_quoted_results_repeated_headers_and_noise(block: str) -> None:
    ours, theirs = parse(block), Message.from_line(block)
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    assert dict(ours.items()) == dict(theirs.items())
    assert ours.content == theirs.content
    assert ours.get("event") == theirs.get("event")
    assert ours.get("missing", "x") == theirs.get("missing", "x") == "x"
    assert ours.id == theirs.id and ours.success == theirs.success
