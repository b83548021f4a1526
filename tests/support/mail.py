"""A real SMTP server (aiosmtpd) standing in for the group mailboxes in end-to-end tests."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from bench.exchange import until


class Mailbox:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    async def wait(self, count: int, timeout: float = 20.0) -> list[Message]:
        try:
            await until(lambda: len(self.messages) >= count, timeout)
        except AssertionError:
            raise AssertionError(f"{len(self.messages)} mails, expected {count}") from None
        return self.messages


class Smtp:
    def __init__(self, port: int) -> None:
        self.port = port
        self.mailbox = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> Mailbox:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self.mailbox

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
