"""The demo's mail server: keeps every mail as a file, so hoppers' mails can be read.

Only `bereik up` starts it, and only when the configured SMTP server is on this machine and
nothing listens there yet; a real site points [mail] at its own mail server.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from dialplan.config import Config


class FileHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**9}.eml"
        (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        return "250 OK"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


async def start_mail_sink(config: Config, folder: Path) -> asyncio.Server | None:
    host, port = config.mail.smtp_host, config.mail.smtp_port
    if host not in ("127.0.0.1", "localhost") or not _port_free(host, port):
        return None
    handler = FileHandler(folder)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(handler), host, port)
