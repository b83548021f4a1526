"""Who transferred a call to the hopper path, read from Asterisk's transfer variables in one
AGI command (the hopper names that agent)."""

from __future__ import annotations

import asyncio

import pytest

from agi.handlers.hopper import TRANSFER_VARIABLES, transferring_agent
from agi.protocol import Environment
from agi.server import AgiChannel
from tests.support.agi_writer import NullWriter


async def _agent(answer: bytes) -> tuple[str, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(answer)
    reader.feed_eof()
    writer = NullWriter()
    channel = AgiChannel(
        Environment({"uniqueid": "1.1"}),
        reader,
        writer,  # type: ignore[arg-type]
        command_timeout=1.0,
    )
    return await transferring_agent(channel), writer.written


@pytest.mark.parametrize(
    ("values", "agent"),
    [
        ("2001|||", "2001"),  # set by our API before it asked Asterisk to transfer
        ("|PJSIP/2002-0000000a||", "2002"),  # the channel left by a blind transfer
        ("|||PJSIP/2003-0000000b", "2003"),  # an attended transfer
        ("|||", ""),  # nobody transferred: the caller came straight here
    ],
)
async def test_the_transferring_agent_is_read_in_one_command(values: str, agent: str) -> None:
    found, written = await _agent(f"200 result=1 ({values})\n".encode())
    assert found == agent
    asked = "|".join(f"${{{name}}}" for name in TRANSFER_VARIABLES)
    assert written == f'GET FULL VARIABLE "{asked}"\n'.encode()


async def test_a_failed_read_names_no_agent() -> None:
    found, _ = await _agent(b"200 result=0\n")
    assert found == ""
