"""What a SIP scanner sends (issue 26), as sipp scenarios run from another loopback address.

Each scenario passes (sipp exit 0) only when the exchange refuses: a final 401/403 for a
call, a 401/403 for a REGISTER with a wrong password. Answered, it fails: sipp exits
non-zero on any message it did not expect. `silent` scenarios pass when nothing at all
comes back (a banned source's packets are dropped).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.exchange import free_port

ATTACKER = "127.0.0.3"
PHONES = "127.0.0.2"

_INVITE_BODY = """Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=scanner 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000"""

# The ACK of a final non-2xx carries its INVITE's branch ([branch-N]: N scenario elements
# back), so a stateful proxy matches it and stops resending the answer.
_ACK = """  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-{back}]
      From: <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{to_user}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>"""


def call_as(from_user: str, to_user: str = "[service]", extra_headers: str = "") -> str:
    """An INVITE to [service] claiming From `from_user` (and To `to_user`): must end in
    401 or 403. A 401 is answered once with credentials (-au/-ap given to sipp), which
    must be refused as well."""
    # No line may be blank before the body: sipp would end the headers there.
    extra = f"\n      {extra_headers}" if extra_headers else ""
    head = f"""INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{to_user}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      Contact: <sip:{from_user}@[local_ip]:[local_port]>
      Max-Forwards: 70{extra}"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="a stranger calls as {from_user}">
  <send retrans="500">
    <![CDATA[
      {head}
      CSeq: 1 INVITE
      {_INVITE_BODY}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="403" optional="true" next="forbidden"/>
  <recv response="401" auth="true"/>
{_ACK.format(from_user=from_user, to_user=to_user, cseq=1, back=4)}
  <send retrans="500">
    <![CDATA[
      {head}
      CSeq: 2 INVITE
      [authentication]
      {_INVITE_BODY}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="401" optional="true" next="refused"/>
  <recv response="403"/>
  <label id="refused"/>
{_ACK.format(from_user=from_user, to_user=to_user, cseq=2, back=4)}
  <nop next="end"/>
  <label id="forbidden"/>
{_ACK.format(from_user=from_user, to_user=to_user, cseq=1, back=11)}
  <label id="end"/>
</scenario>
"""


def register_as(from_user: str, to_user: str, *, refused: bool = True) -> str:
    """A REGISTER of To `to_user` from From `from_user` with the credentials given to
    sipp (-au/-ap). refused: must end in 401 or 403; else must end in 200."""
    request = f"""REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{from_user}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{to_user}@[remote_ip]>
      Call-ID: [call_id]
      Contact: <sip:{to_user}@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70"""
    end = (
        """  <recv response="401" optional="true" next="end"/>
  <recv response="403"/>"""
        if refused
        else '  <recv response="200"/>'
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register {to_user} as {from_user}">
  <send retrans="500">
    <![CDATA[
      {request}
      CSeq: 1 REGISTER
      Content-Length: 0
    ]]>
  </send>
  <recv response="403" optional="true" next="end"/>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      {request}
      CSeq: 2 REGISTER
      [authentication]
      Content-Length: 0
    ]]>
  </send>
{end}
  <label id="end"/>
</scenario>
"""


def unanswered_register(user: str) -> str:
    """A REGISTER that must get no answer at all (its source is banned): sipp passes when
    its 3 s wait for any response times out (ontimeout jumps to the end)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="a banned source registers">
  <send>
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" timeout="3000" ontimeout="silent"/>
  <nop next="answered"/>
  <label id="silent"/>
  <nop next="end"/>
  <label id="answered"/>
  <send>
    <![CDATA[
      OPTIONS sip:this-source-was-answered@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 OPTIONS
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="999" timeout="100"/>
  <label id="end"/>
</scenario>
"""


def in_dialog_invite(route: str) -> str:
    """An INVITE that claims to belong to a dialog (a To tag) with a Route header naming
    another address: an open relay forwards it there. Must end in 403 (or 404)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="a forged in-dialog INVITE routed elsewhere">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@{route} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Route: <sip:[remote_ip]:[remote_port];lr>, <sip:{route};lr>
      From: <sip:0612345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@{route}>;tag=forged-dialog
      Call-ID: [call_id]
      CSeq: 7 INVITE
      Contact: <sip:0612345678@[local_ip]:[local_port]>
      Max-Forwards: 70
      {_INVITE_BODY}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="404" optional="true" next="end"/>
  <recv response="403"/>
  <label id="end"/>
</scenario>
"""


def options_flood(user: str = "scan") -> str:
    """One OPTIONS (sipp repeats it at the rate given): refused (403) or, once the source
    is banned, unanswered."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="a flood of OPTIONS">
  <send>
    <![CDATA[
      OPTIONS sip:{user}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="403" timeout="500" ontimeout="end"/>
  <label id="end"/>
</scenario>
"""


async def sipp(
    workdir: Path,
    name: str,
    scenario: str,
    target: str,
    *extra: str,
    local_ip: str = ATTACKER,
    calls: int = 1,
    rate: float = 10,
    service: str = "14070",
    timeout_s: int = 20,
) -> tuple[int, str]:
    """Run a scenario `calls` times from `local_ip` against `target` (host:port); sipp's
    exit status and the SIP messages it saw."""
    path = workdir / f"{name}.xml"
    path.write_text(scenario)
    messages = workdir / f"{name}-messages.log"
    process = await asyncio.create_subprocess_exec(
        "sipp",
        target,
        "-sf",
        str(path),
        "-s",
        service,
        "-i",
        local_ip,
        "-p",
        str(free_port()),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-l",
        str(calls),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(messages),
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}-errors.log"),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    code = await process.wait()
    return code, messages.read_text(errors="replace") if messages.exists() else ""
