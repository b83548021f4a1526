"""What an AGI channel writes, kept: its stream writer in unit tests, whose answers come
from a fed `asyncio.StreamReader`."""

from __future__ import annotations


class NullWriter:
    """Takes what the channel writes; the response comes from the fed reader."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None
