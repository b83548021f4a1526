"""Mail to the group mailboxes carries callers' numbers: the outbox uses STARTTLS whenever
the server offers it, and with `mail.starttls = "require"` sends nothing without it or to a
server whose certificate does not verify. Against a real aiosmtpd with STARTTLS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bench.exchange import free_port
from bereik.tls import make_self_signed
from cti.outbox import send_due
from cti.services import Services
from cti.store.models import OutboxMail
from dialplan.config import Config, ConfigError, load
from tests.support.memory_services import memory_services


class Mailbox:
    """Keeps each mail's subject and whether it came over TLS."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = next(
            line[9:]
            for line in envelope.content.decode().splitlines()
            if line.startswith("Subject: ")
        )
        self.received.append((subject, session.ssl is not None))
        return "250 OK"


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    cert, key = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    make_self_signed(cert, key, ["127.0.0.1"])
    return cert


def smtp_server(port: int, certificate: Path | None) -> tuple[Controller, Mailbox]:
    mailbox = Mailbox()
    context = None
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, certificate.with_name("smtp-key.pem"))
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    return controller, mailbox


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def with_starttls(port: int, certificate: Path) -> Iterator[Mailbox]:
    controller, mailbox = smtp_server(port, certificate)
    yield mailbox
    controller.stop()


@pytest.fixture
def without_starttls(port: int) -> Iterator[Mailbox]:
    controller, mailbox = smtp_server(port, None)
    yield mailbox
    controller.stop()


async def outbox(tmp_path: Path, port: int, **mail: str) -> AsyncIterator[Services]:
    config = Config.model_validate({"mail": {"smtp_port": port, "retry_seconds": 1, **mail}})
    async with memory_services(config, tmp_path) as services:
        async with services.sessions() as session:
            session.add(
                OutboxMail(key="k1", recipient="team@example.org", subject="hopper", body="06...")
            )
            await session.commit()
        yield services


async def last_error(services: Services) -> str:
    async with services.sessions() as session:
        row = (await session.execute(select(OutboxMail))).scalar_one()
        assert row.sent_at is None
        return row.last_error


async def test_by_default_the_mail_goes_over_starttls_when_the_server_offers_it(
    tmp_path: Path, port: int, with_starttls: Mailbox
) -> None:
    async for services in outbox(tmp_path, port):
        assert await send_due(services) == 1
    assert with_starttls.received == [("hopper", True)]


async def test_by_default_a_server_without_starttls_still_gets_the_mail(
    tmp_path: Path, port: int, without_starttls: Mailbox
) -> None:
    async for services in outbox(tmp_path, port):
        assert await send_due(services) == 1
    assert without_starttls.received == [("hopper", False)]


async def test_required_starttls_with_a_verified_certificate_sends(
    tmp_path: Path, port: int, with_starttls: Mailbox, certificate: Path
) -> None:
    async for services in outbox(tmp_path, port, starttls="require", ca_file=str(certificate)):
        assert await send_due(services) == 1
    assert with_starttls.received == [("hopper", True)]


async def test_required_starttls_sends_nothing_to_a_server_without_it(
    tmp_path: Path, port: int, without_starttls: Mailbox
) -> None:
    async for services in outbox(tmp_path, port, starttls="require"):
        assert await send_due(services) == 0
        assert "STARTTLS" in await last_error(services)
    assert without_starttls.received == []


async def test_required_starttls_sends_nothing_to_a_certificate_that_does_not_verify(
    tmp_path: Path, port: int, with_starttls: Mailbox
) -> None:
    """A self-signed certificate the system's CAs do not know (someone in between)."""
    async for services in outbox(tmp_path, port, starttls="require"):
        assert await send_due(services) == 0
        assert "certificate" in (await last_error(services)).lower()
    assert with_starttls.received == []


async def test_starttls_off_sends_in_the_clear_even_when_offered(
    tmp_path: Path, port: int, with_starttls: Mailbox
) -> None:
    async for services in outbox(tmp_path, port, starttls="off"):
        assert await send_due(services) == 1
    assert with_starttls.received == [("hopper", False)]


def test_an_unknown_starttls_mode_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "bereik.toml"
    path.write_text('[mail]\nstarttls = "maybe"\n')
    with pytest.raises(ConfigError, match=r"mail\.starttls"):
        load(path)
