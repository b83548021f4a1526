"""A second Asterisk on this machine playing the SIP provider in front of the exchange.

It listens on 127.0.0.3 (another loopback address, so the exchange must match it by the
registration's server, not by 127.0.0.1), demands registration with a user name and
password, sends citizens' calls (sipp from 127.0.0.2) to the registered contact, and
challenges the exchange's outgoing calls too. What arrives from the exchange is written to
`outbound.txt`: the dialled number, CALLERID(num) (P-Asserted-Identity trusted, as a
provider does) and the From user, one line per call; then the provider answers.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import jinja2

from bench.exchange import ARTIFACTS, free_port
from bereik.tls import make_self_signed
from dialplan.asterisk import AsteriskProcess, Installation
from dialplan.config import Config
from dialplan.render import MODULES, TEMPLATES, Directories

ADDRESS = "127.0.0.3"
CITIZENS = "127.0.0.2"


class Provider:
    def __init__(
        self, installation: Installation, username: str, password: str, transport: str = "udp"
    ) -> None:
        self.installation = installation
        self.username = username
        self.password = password
        self.transport = transport  # for the municipality; citizens always come over UDP
        self.port = free_port()
        self.tls_port = free_port()
        self.instance_dir = f"/var/lib/bereik/provider-{self.port}"
        self.asterisk = AsteriskProcess(installation, self.instance_dir)

    @property
    def asterisk_address(self) -> str:
        """host:port of its SIP transport for the exchange, as [trunk] server names it."""
        return f"{ADDRESS}:{self.tls_port if self.transport == 'tls' else self.port}"

    @property
    def citizens_address(self) -> str:
        return f"{ADDRESS}:{self.port}"

    @property
    def certificate(self) -> Path:
        """Its self-signed certificate (with TLS): the exchange's [tls] ca_file."""
        return self.host / "etc" / "cert.pem"

    @property
    def host(self) -> Path:
        return self.installation.host_path(self.instance_dir)

    @property
    def outbound_file(self) -> Path:
        return self.host / "outbound.txt"

    def outbound_calls(self) -> list[list[str]]:
        """One [dialled, caller id, From user] per call that arrived from the exchange."""
        if not self.outbound_file.exists():
            return []
        return [line.split("|") for line in self.outbound_file.read_text().splitlines()]

    def start(self) -> None:
        for sub in ("etc", "lib", "run", "log", "spool"):
            (self.host / sub).mkdir(parents=True, exist_ok=True)
        for name, text in self._files().items():
            (self.host / "etc" / name).write_text(text)
        self.outbound_file.write_text("")  # FILE() appends lines only to an existing file
        if self.transport == "tls":
            make_self_signed(self.certificate, self.host / "etc" / "key.pem", [ADDRESS])
        self.asterisk.start()

    def stop(self) -> None:
        self.asterisk.stop()
        with contextlib.suppress(OSError):
            target = ARTIFACTS / "logs" / f"provider-{self.port}"
            target.mkdir(parents=True, exist_ok=True)
            for log in (self.host / "log").glob("*.log"):
                shutil.copy(log, target / log.name)
        shutil.rmtree(self.host, ignore_errors=True)

    def cli(self, command: str) -> str:
        return self.asterisk.cli(command)

    def contact(self, timeout: float = 20.0) -> str:
        """The exchange's registered contact, once it has registered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.cli(f"pjsip show aor {self.username}").splitlines():
                # The parameter listing, untruncated: " contact   : sip:...;line=..."
                name, _, value = line.partition(":")
                if name.strip() == "contact" and value.strip():
                    return value.strip()
            time.sleep(0.2)
        raise AssertionError(f"the exchange did not register at the provider within {timeout} s")

    def _files(self) -> dict[str, str]:
        instance = self.instance_dir
        tls_transport = (
            f"""
[transport-tls]
type = transport
protocol = tls
bind = {ADDRESS}:{self.tls_port}
cert_file = {instance}/etc/cert.pem
priv_key_file = {instance}/etc/key.pem
method = tlsv1_2
"""
            if self.transport == "tls"
            else ""
        )
        modules = [*MODULES, "func_env.so", "func_cut.so", "res_pjsip_header_funcs.so"]
        record = "${EXTEN}|${CALLERID(num)}|${CUT(CUT(PJSIP_HEADER(read,From),@,1),:,2)}"
        return {
            # The exchange's own template: the same directories, under the provider's instance.
            "asterisk.conf": jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES))
            .get_template("asterisk.conf.j2")
            .render(
                dirs=Directories(instance, self.installation.modules_dir),
                config=Config.model_validate({}),  # one Asterisk, no node name
            ),
            "modules.conf": "[modules]\nautoload = no\n"
            + "".join(f"load = {module}\n" for module in modules),
            "logger.conf": "[logfiles]\nmessages.log => notice,warning,error,verbose(3)\n",
            "rtp.conf": "[general]\nrtpstart = 40000\nrtpend = 44999\n",
            "pjsip.conf": f"""[global]
type = global
user_agent = Provider
; Citizens by address; the exchange by the user name it authenticates with.
endpoint_identifier_order = ip,auth_username

[transport-udp]
type = transport
protocol = udp
bind = {ADDRESS}:{self.port}
{tls_transport}
; The municipality's account: endpoint, auth and AOR named after its user name, which is
; also the AOR it registers (To: sip:<username>@provider).
[{self.username}]
type = endpoint
context = from-bereik
disallow = all
allow = alaw,ulaw
direct_media = no
rtp_symmetric = yes
auth = {self.username}
aors = {self.username}
; Calls from the exchange carry the citizen's caller ID in From, not the account: they
; are matched by the user name in their Authorization.
identify_by = username,auth_username
trust_id_inbound = yes

[{self.username}]
type = auth
auth_type = userpass
username = {self.username}
password = {self.password}

[{self.username}]
type = aor
max_contacts = 1
remove_existing = yes

[citizens]
type = endpoint
context = from-citizens
disallow = all
allow = alaw,ulaw
direct_media = no
rtp_symmetric = yes

[citizens]
type = identify
endpoint = citizens
match = {CITIZENS}
""",
            "extensions.conf": f"""[from-citizens]
; The dialled number goes to the exchange as dialled (+31..., 0031..., 14070).
exten => _X.,1,Dial(PJSIP/${{EXTEN}}@{self.username},60)
exten => _+X.,1,Dial(PJSIP/${{EXTEN}}@{self.username},60)

[from-bereik]
exten => _[+0-9].,1,Set(FILE({instance}/outbound.txt,,,al,u)={record})
 same => n,Answer()
 same => n,Wait(1)
 same => n,Hangup()
""",
        }
