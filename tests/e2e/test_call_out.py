"""Staff call out from their own phones (issue 26): through the trunk to the second
Asterisk playing the provider, which records what arrives (dialled number, caller ID).

A phone dials a leading 0 or 112. 112 always goes out; a mobile or landline goes out for
every phone; a premium number only from the phone configured for it, and any other
phone hears why not (spoken as early media, then 403 Forbidden; nothing reaches the
provider). The phones call from 127.0.0.2, the provider is 127.0.0.3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.exchange import Exchange, Phone, exchange, free_port, until
from dialplan import asterisk
from dialplan.render import load_secrets
from tests.support.provider import Provider
from tests.support.sip_attacks import PHONES, sipp

REFUSED = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A phone (digest auth: -au/-ap) dials [service]; the exchange must tell why not:
     early media (183 with SDP, the spoken reason), then 403 Forbidden. Each ACK of a
     non-2xx carries its INVITE's branch ([branch-N]: N elements back). -->
<scenario name="a refused number">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:@phone@@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:@phone@@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:@phone@@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:@phone@@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      [authentication]
      Contact: <sip:@phone@@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="183"/>
  <recv response="403"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
      From: <sip:@phone@@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


@pytest.fixture
def provider(installation: asterisk.Installation) -> Iterator[Provider]:
    provider = Provider(installation, "gemeente-rijswijk", "Tr0mp3t-tr0mmel")
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def registered(
    installation: asterisk.Installation, tmp_path: Path, provider: Provider
) -> Iterator[Exchange]:
    """The exchange registered at the provider (E.164 numbers); phone 3001 may also call
    premium numbers, 3002 may not; both present the configured number."""
    trunk = f"""
[trunk]
server = "{provider.asterisk_address}"
username = "{provider.username}"
password = "{provider.password}"
dids = ["+31701234567"]
number_format = "e164"

[calls_out]
caller_id = "0701234999"
extra_prefixes = {{ "0900" = ["3001"] }}
"""
    phones = [
        Phone("2001", free_port(), "KCC Anna"),
        Phone("3001", free_port(), "Vergunningen Carla", registers=True),
        Phone("3002", free_port(), "Vergunningen Piet", registers=True),
    ]
    with exchange(installation, tmp_path, phones=phones, extra_toml=trunk) as ex:
        ex.start_asterisk()
        provider.contact()  # registered: calls can go out
        yield ex


async def call_out(ex: Exchange, phone: str, number: str) -> None:
    """The phone dials the number from 127.0.0.2; the provider answers it (1 s)."""
    # The provider hangs up after a second: the phone listens for that BYE at once.
    result = await ex.call(
        number, from_phone=phone, local_ip=PHONES, hold_ms=3000, key_delay_ms=100
    )
    assert result.returncode == 0, result.stderr


async def test_a_phone_calls_a_mobile_and_112_presenting_the_municipalitys_number(
    registered: Exchange, provider: Provider
) -> None:
    await call_out(registered, "3002", "0612345678")
    await call_out(registered, "3002", "112")
    # As the provider received them: the number in E.164 (112 as dialled), and the
    # configured number as caller ID and in From, never the extension.
    await until(lambda: len(provider.outbound_calls()) == 2)
    assert provider.outbound_calls() == [
        ["+31612345678", "+31701234999", "+31701234999"],
        ["112", "+31701234999", "+31701234999"],
    ]


async def test_a_premium_number_goes_out_only_from_the_phone_allowed_it_and_others_hear_why(
    registered: Exchange, provider: Provider
) -> None:
    password = load_secrets(registered.host_instance / "secrets.json", registered.config)
    scenario = REFUSED.replace("@phone@", "3002")
    refusal = sipp(
        registered.workdir,
        "premium-refused",
        scenario,
        f"127.0.0.1:{registered.ports.sip}",
        "-au",
        "3002",
        "-ap",
        password.phones["3002"],
        local_ip=PHONES,
        service="0900123456",
    )
    code, messages = await refusal
    assert code == 0, messages[-2000:]
    assert "m=audio" in messages.split("SIP/2.0 183")[1]  # the spoken reason, early media
    log = (registered.host_instance / "log" / "messages.log").read_text()
    assert "call out from 3002 to 0900... refused: premium" in log
    # Abroad, for a phone without the prefix: refused for that reason.
    code, messages = await sipp(
        registered.workdir,
        "abroad-refused",
        scenario,
        f"127.0.0.1:{registered.ports.sip}",
        "-au",
        "3002",
        "-ap",
        password.phones["3002"],
        local_ip=PHONES,
        service="0032471123456",
    )
    assert code == 0, messages[-2000:]
    assert provider.outbound_calls() == []
    await call_out(registered, "3001", "0900123456")
    await until(lambda: provider.outbound_calls())
    assert provider.outbound_calls() == [["+31900123456", "+31701234999", "+31701234999"]]
    log = (registered.host_instance / "log" / "messages.log").read_text()
    assert "call out from 3002 to 0032... refused: abroad" in log
