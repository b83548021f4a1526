"""The trunk's encryption against a real provider (a second Asterisk on 127.0.0.3,
tests/support/provider.py): over TLS the exchange verifies the provider's certificate (a
certificate no trusted CA signed gets no registration), and with
`trunk.media_encryption = "sdes"` a callback's media to the provider is SRTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from bereik.cli import main
from dialplan import asterisk
from tests.support.api import ami_connected, api
from tests.support.callbacks import TEAMS, outcome, seed
from tests.support.provider import Provider

pytestmark = pytest.mark.e2e


class SrtpProvider(Provider):
    """The provider with SRTP required on the exchange's account (never optimistic: a call
    offered in plain RTP gets 488), writing per call from the exchange whether its media
    was encrypted (CHANNEL(rtp,secure)) to secure.txt."""

    @property
    def secure_file(self) -> Path:
        return self.host / "secure.txt"

    def secure_calls(self) -> list[str]:
        return self.secure_file.read_text().split() if self.secure_file.exists() else []

    def _files(self) -> dict[str, str]:
        files = super()._files()
        account = f"[{self.username}]\ntype = endpoint\n"
        assert account in files["pjsip.conf"]
        files["pjsip.conf"] = files["pjsip.conf"].replace(
            account, account + "media_encryption = sdes\nmedia_encryption_optimistic = no\n"
        )
        answer = " same => n,Answer()\n"
        assert answer in files["extensions.conf"]
        record = f"FILE({self.instance_dir}/secure.txt,,,al,u)=${{CHANNEL(rtp,secure)}}"
        files["extensions.conf"] = files["extensions.conf"].replace(
            answer, f"{answer} same => n,Set({record})\n"
        )
        return files

    def start(self) -> None:
        super().start()
        self.secure_file.write_text("")  # FILE() appends only to an existing file


def trunk_toml(tmp_path: Path, provider: Provider, *, ca: bool, srtp: bool = False) -> str:
    return (
        f'[trunk]\nserver = "{provider.asterisk_address}"\nusername = "{provider.username}"\n'
        f'password = "{provider.password}"\ntransport = "tls"\ndids = ["+31701234567"]\n'
        + ('media_encryption = "sdes"\n' if srtp else "")
        + '\n[callbacks]\ncaller_id = "0701234567"\nmember_ring_seconds = 10\n'
        "ring_seconds = 10\ncheck_seconds = 1\n"
        f'\n[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
        f"sip_port = {free_port()}\n" + (f'ca_file = "{provider.certificate}"\n' if ca else "")
    )


@pytest.fixture
def provider(installation: asterisk.Installation) -> Iterator[SrtpProvider]:
    provider = SrtpProvider(installation, "gemeente-rijswijk", "Tr0mp3t-tr0mmel", "tls")
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


async def settled_registration(ex: Exchange, timeout: float = 30) -> str:
    """The outbound registration's status once its first attempt has ended."""
    async with ex.ami_events() as ami:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await ami.client.action_list({"Action": "PJSIPShowRegistrationsOutbound"})
            details = [r for r in rows if r.get("Event") == "OutboundRegistrationDetail"]
            status = str(details[0]["Status"]) if details else ""
            if status in ("Registered", "Rejected"):
                return status
            await asyncio.sleep(0.3)
    raise AssertionError(f"the registration did not end within {timeout} s")


def contact_at(provider: Provider) -> str:
    """The exchange's contact as the provider has it now ("" when it never registered)."""
    for line in provider.cli(f"pjsip show aor {provider.username}").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "contact" and value.strip():
            return value.strip()
    return ""


async def test_a_tls_provider_whose_certificate_no_trusted_ca_signed_gets_no_registration(
    installation: asterisk.Installation, tmp_path: Path, provider: SrtpProvider
) -> None:
    """No [tls] ca_file: the system's CAs decide, and none signed the provider's
    self-signed certificate (as none signed a stranger's in between)."""
    phones = [Phone("2001", free_port(), "KCC Anna")]
    toml = trunk_toml(tmp_path, provider, ca=False)
    with exchange(installation, tmp_path, phones=phones, extra_toml=toml) as ex:
        assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_asterisk()
        assert await settled_registration(ex) == "Rejected"
        assert contact_at(provider) == ""


async def test_a_callback_to_an_srtp_provider_over_tls_is_encrypted(
    installation: asterisk.Installation, tmp_path: Path, provider: SrtpProvider
) -> None:
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Piet")]
    toml = trunk_toml(tmp_path, provider, ca=True, srtp=True)
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=toml) as ex:
        assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_asterisk()
        # With ca_file, the same provider's certificate verifies: registered.
        assert await settled_registration(ex) == "Registered"
        ex.start_serve()
        ex.phone("3001", ring_ms=200)
        hopper_id, token, _ = await seed(ex, caller="0612345678")
        await ami_connected(ex)
        status, body = await api(ex, "POST", f"/api/hoppers/{hopper_id}/callback", token)
        assert status == 202, body
        attempt = await outcome(ex, body["id"])
        # The provider refuses plain RTP (488): reached means the media was SRTP.
        assert attempt.outcome == "reached"
        await until(provider.secure_calls)
        assert provider.secure_calls() == ["1"]
        assert [call[0] for call in provider.outbound_calls()] == ["0612345678"]
