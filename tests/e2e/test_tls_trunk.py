"""Encryption and the trunk against real parts: baresip over TLS with SRTP, HTTPS of the
screens, and a second Asterisk playing the provider that demands registration."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from bereik.cli import main
from dialplan import asterisk
from dialplan.render import load_secrets
from tests.support.api import ami_connected, api
from tests.support.baresip import Baresip
from tests.support.callbacks import TEAMS, outcome, seed
from tests.support.provider import CITIZENS, Provider
from tests.support.users import PASSWORD, add_users


def tls_toml(tmp_path: Path, https: bool = True) -> str:
    return (
        f'[tls]\ncert_file = "{tmp_path}/tls/cert.pem"\nkey_file = "{tmp_path}/tls/key.pem"\n'
        f"sip_port = {free_port()}\nhttps = {str(https).lower()}\n"
    )


@pytest.fixture
def secure(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """14070 with KCC agent 2001 on a TLS phone, HTTPS screens; certs from `bereik tls`."""
    phones = [Phone("2001", free_port(), "KCC Anna", transport="tls")]
    with exchange(installation, tmp_path, phones=phones, extra_toml=tls_toml(tmp_path)) as ex:
        assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_asterisk()
        yield ex


@pytest.fixture
def https(installation: asterisk.Installation, tmp_path: Path) -> Iterator[Exchange]:
    """Only `bereik serve`, on HTTPS (the web's own rules need no Asterisk)."""
    with exchange(installation, tmp_path, extra_toml=tls_toml(tmp_path)) as ex:
        assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_serve()
        yield ex


def tls_phone(
    ex: Exchange, *, srtp: bool = True, register: bool = True, over_tls: bool = True
) -> Baresip:
    """Phone 2001 as baresip, signing in over TLS to the exchange's TLS port (or, to show
    what is refused, over plain UDP to its UDP port)."""
    password = load_secrets(ex.host_instance / "secrets.json", ex.config).phones["2001"]
    address = (
        f"127.0.0.1:{ex.config.tls.sip_port};transport=tls"
        if over_tls
        else f"127.0.0.1:{ex.ports.sip}"
    )
    return Baresip(
        ex.workdir,
        f"sip:2001@{address}",
        password=password,
        ca_file=ex.config.tls.cert_file,
        srtp=srtp,
        register=register,
    )


async def test_a_tls_phone_registers_and_answers_a_citizens_call_with_srtp(
    secure: Exchange,
) -> None:
    secure.start_serve()
    phone = tls_phone(secure)
    await phone.start()
    try:
        # Registered, as Asterisk sees it: a contact of 2001 over TLS.
        await until(lambda: "transport=tls" in secure.cli("pjsip show aor 2001").lower())
        async with secure.ami_events() as ami:
            result = await secure.call("14070", caller="0612345678", hold_ms=3000)
            assert result.returncode == 0, result.stderr
            dial = await ami.wait_for(
                "DialBegin", where=lambda e: e.get("CallerIDNum") == "0612345678"
            )
            assert dial["DestChannel"].startswith("PJSIP/2001-")
            end = await ami.wait_for("DialEnd", DestUniqueid=dial["DestUniqueid"])
            assert end["DialStatus"] == "ANSWER"
        await phone.wait_for("CALL_ESTABLISHED")
        # The phone accepts only SDES-SRTP (mediaenc=srtp-mand) and says it is on.
        assert phone.logged("SRTP is Enabled")
    finally:
        await phone.stop()


async def test_a_tls_phone_calls_14070_over_tls_with_srtp(secure: Exchange) -> None:
    secure.start_serve()
    phone = tls_phone(secure, register=False)
    await phone.start()
    try:
        await phone.command(
            "dial", f"sip:14070@127.0.0.1:{secure.config.tls.sip_port};transport=tls"
        )
        await phone.wait_for("CALL_ESTABLISHED")
        assert phone.logged("SRTP is Enabled")
        await until(lambda: secure.rows("SELECT entry FROM calls"))
    finally:
        await phone.stop()
    assert [tuple(c) for c in secure.rows("SELECT caller, entry FROM calls")] == [("2001", "14070")]


async def test_a_tls_phones_call_over_plain_udp_is_refused(secure: Exchange) -> None:
    """Its SDP would carry the SRTP keys in the clear: refused before it is answered."""
    secure.start_serve()
    phone = tls_phone(secure, register=False, over_tls=False)
    await phone.start()
    try:
        await phone.command("dial", f"sip:14070@127.0.0.1:{secure.ports.sip}")
        closed = await phone.wait_for("CALL_CLOSED")
        assert closed["param"].startswith("488"), closed
    finally:
        await phone.stop()
    assert secure.rows("SELECT count(*) AS n FROM calls")[0].n == 0


async def test_a_plain_rtp_offer_from_a_tls_phone_is_refused(secure: Exchange) -> None:
    secure.start_serve()
    phone = tls_phone(secure, srtp=False, register=False)
    await phone.start()
    try:
        await phone.command(
            "dial", f"sip:14070@127.0.0.1:{secure.config.tls.sip_port};transport=tls"
        )
        closed = await phone.wait_for("CALL_CLOSED")
        assert closed["param"].startswith("488"), closed
    finally:
        await phone.stop()
    assert secure.rows("SELECT count(*) AS n FROM calls")[0].n == 0


async def test_the_screens_answer_over_https_with_hsts_and_a_secure_cookie(https: Exchange) -> None:
    await add_users(https, [("beheer", "admin", "", "")])
    context = https.ssl_context()
    assert context is not None  # the fixture's exchange serves HTTPS
    connector = aiohttp.TCPConnector(ssl=context)
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: allows cookies for an IP address
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:
        login = await http.get(https.url("/login"))
        assert login.status == 200
        assert login.headers["Strict-Transport-Security"] == "max-age=31536000"
        token = re.search(r'name="login_token" value="([^"]+)"', await login.text())
        assert token
        signed_in = await http.post(
            https.url("/login"),
            data={"name": "beheer", "password": PASSWORD, "login_token": token[1], "next": "/"},
            allow_redirects=False,
        )
        assert signed_in.status == 303
        cookie = signed_in.headers["Set-Cookie"]
        assert "; Secure" in cookie and "; HttpOnly" in cookie
        assert signed_in.headers["Strict-Transport-Security"] == "max-age=31536000"
        # Nothing is served in the clear on the same port.
        with pytest.raises(aiohttp.ClientError):
            await http.get(https.url("/login").replace("https://", "http://"))


@pytest.fixture(params=["udp", "tls"])
def provider(
    installation: asterisk.Installation, request: pytest.FixtureRequest
) -> Iterator[Provider]:
    """The provider, reached by the exchange over UDP or over TLS (its certificate verified)."""
    provider = Provider(installation, "gemeente-rijswijk", "Tr0mp3t-tr0mmel", request.param)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def registered(
    installation: asterisk.Installation, tmp_path: Path, provider: Provider
) -> Iterator[Exchange]:
    """The exchange behind the provider: registers, takes +31701234567, sends E.164."""
    trunk = f"""
[trunk]
server = "{provider.asterisk_address}"
username = "{provider.username}"
password = "{provider.password}"
transport = "{provider.transport}"
dids = ["+31701234567"]
number_format = "e164"

[callbacks]
caller_id = "0701234567"
member_ring_seconds = 10
ring_seconds = 10
check_seconds = 1
"""
    if provider.transport == "tls":
        trunk += tls_toml(tmp_path, https=False) + f'ca_file = "{provider.certificate}"\n'
    phones = [Phone("2001", free_port(), "KCC Anna"), Phone("3001", free_port(), "Piet")]
    with exchange(installation, tmp_path, phones=phones, teams_toml=TEAMS, extra_toml=trunk) as ex:
        if provider.transport == "tls":
            assert main(["tls", "selfsigned", "--config", str(ex.config_path)]) == 0
        ex.start_asterisk()
        yield ex


async def test_the_exchange_registers_at_the_provider_with_its_credentials(
    registered: Exchange, provider: Provider
) -> None:
    contact = provider.contact()
    tls = provider.transport == "tls"
    port = registered.config.tls.sip_port if tls else registered.ports.sip
    assert contact.startswith(f"sip:{provider.username}@127.0.0.1:{port}")
    async with registered.ami_events() as ami:
        registrations = await ami.client.action_list({"Action": "PJSIPShowRegistrationsOutbound"})
    details = [r for r in registrations if r.get("Event") == "OutboundRegistrationDetail"]
    assert [(d["ServerUri"], d["Transport"], d["Status"]) for d in details] == [
        (f"sip:{provider.asterisk_address}", f"transport-{provider.transport}", "Registered")
    ]


async def test_a_call_to_the_did_through_the_provider_is_a_14070_call(
    registered: Exchange, provider: Provider
) -> None:
    registered.start_serve()
    registered.phone("2001")
    provider.contact()
    # The provider sends the number as the citizen dialled it; both forms reach the menu.
    for did, caller in (("+31701234567", "0612345678"), ("0031701234567", "0687654321")):
        result = await registered.call(
            did, caller=caller, target=provider.citizens_address, local_ip=CITIZENS, hold_ms=4000
        )
        assert result.returncode == 0, result.stderr
    # Counted as calls to 14070, whatever form the number arrived in.
    sql = "SELECT caller, entry, outcome FROM calls ORDER BY id"
    # The listener writes the outcome from AMI events just after the call ends.
    await until(lambda: (rows := registered.rows(sql)) and all(c.outcome for c in rows))
    assert [tuple(c) for c in registered.rows(sql)] == [
        ("0612345678", "14070", "answered_kcc"),
        ("0687654321", "14070", "answered_kcc"),
    ]


async def test_a_callback_leaves_through_the_provider_with_the_configured_caller_id(
    registered: Exchange, provider: Provider
) -> None:
    registered.start_serve()
    registered.phone("3001", ring_ms=200)
    provider.contact()
    hopper_id, token, _ = await seed(registered, caller="0612345678")
    await ami_connected(registered)
    status, body = await api(registered, "POST", f"/api/hoppers/{hopper_id}/callback", token)
    assert status == 202, body
    attempt = await outcome(registered, body["id"])
    assert attempt.outcome == "reached"
    # As the provider received it (after challenging the exchange for its password):
    # the citizen in E.164, and the municipality's number as caller ID and in From.
    assert provider.outbound_calls() == [["+31612345678", "+31701234567", "+31701234567"]]
