"""Kamailio in front of several Asterisk nodes: rendered from the same TOML, run unprivileged.

`render_kamailio` writes deploy/kamailio/*.j2 into [kamailio] instance_dir (0600 files in a
0700 directory owned by the user Kamailio runs as, since they carry the phones'
passwords); `KamailioProcess` runs it in the foreground on its own ports, dropping to
[kamailio] user when started as root; `rpc` is its JSON-RPC over HTTP on loopback.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import pwd
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from dialplan.asterisk import Installation, InstallError, stop_process
from dialplan.config import Config, ConfigError
from dialplan.private import private_dir, write_private
from dialplan.render import load_secrets, secrets_file, templates

TEMPLATES = Path(__file__).resolve().parents[1] / "deploy" / "kamailio"
BINARY = "/usr/sbin/kamailio"
MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
)
# Dispatcher state for a drained node: "d" (disabled) is never probed back to active, so a
# node stays drained until `bereik node undrain` sets it active and probed again ("ap").
DRAINED, UNDRAINED = "d", "ap"
SET = 1
# `bereik up --nodes N` derives every port from [asterisk]'s (so two demos with different
# configurations share none): node n's SIP port is sip_port + n * NODE_SIP_STEP, its AMI
# port ami_port + n * NODE_AMI_STEP, Kamailio's RPC port ami_port + (N + 1) * NODE_AMI_STEP,
# node n's RTP range the n-th NODE_RTP_SPAN from rtp_start.
NODE_SIP_STEP, NODE_AMI_STEP, NODE_RTP_SPAN = 100, 1, 1000


def derived_port_offsets(count: int) -> frozenset[int]:
    """The offsets from a configured SIP or AMI port at which `bereik up --nodes count`
    binds listeners of its own."""
    return frozenset(
        {n * NODE_SIP_STEP for n in range(1, count + 1)}
        | {n * NODE_AMI_STEP for n in range(1, count + 2)}
    )


class KamailioError(Exception):
    pass


def modules_dir() -> str:
    for candidate in MODULE_DIRS:
        if Path(candidate).is_dir():
            return candidate
    raise InstallError("Kamailio is not installed: run scripts/install-deps (Debian kamailio)")


def render_kamailio(config: Config, installation: Installation) -> Path:
    """Write kamailio.cfg and dispatcher.list; return the directory."""
    if not config.nodes:
        raise ConfigError("[kamailio] needs [[nodes]]: give at least one Asterisk node")
    home = private_dir(Path(config.kamailio.instance_dir))
    secrets = load_secrets(secrets_file(installation, config), config)
    environment = templates(TEMPLATES)
    context = {
        "config": config,
        "k": config.kamailio,
        "secrets": secrets,
        "etc": str(home),
        "modules_dir": modules_dir(),
        "trunk_networks": trunk_networks(config),
    }
    if config.tls.enabled:
        # Kamailio drops to its own user: its copies of the pair, readable by it alone.
        for name, source in (
            ("tls-cert.pem", config.tls.cert_file),
            ("tls-key.pem", config.tls.key_file),
        ):
            try:
                write_private(home / name, Path(source).read_bytes())
            except OSError as exc:
                raise ConfigError(f"tls: cannot read {source}: {exc.strerror}") from None
    for template in sorted(TEMPLATES.glob("*.j2")):
        text = environment.get_template(template.name).render(context)
        write_private(home / template.name.removesuffix(".j2"), text)
    _give_to_runtime_user(config, home)
    return home


def trunk_networks(config: Config) -> list[str]:
    """The trunk's addresses as networks Kamailio compares a source with: [asterisk]
    trunk_addresses and a registering trunk's server (a host name is left out: Kamailio
    resolves no names; give the provider's addresses in trunk_addresses)."""
    networks = []
    hosts = [*config.asterisk.trunk_addresses]
    if config.trunk.registers:
        hosts.append(config.trunk.host)
    for host in hosts:
        try:
            networks.append(str(ipaddress.ip_network(host, strict=False)))
        except ValueError:
            continue
    return list(dict.fromkeys(networks))


def _ids(config: Config) -> tuple[int, int] | None:
    """The uid and gid Kamailio drops to; None when we are not root (it runs as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return (
            pwd.getpwnam(config.kamailio.user).pw_uid,
            grp.getgrnam(config.kamailio.group).gr_gid,
        )
    except KeyError as exc:
        raise ConfigError(f"kamailio.user/group: no such user or group ({exc})") from None


def _give_to_runtime_user(config: Config, home: Path) -> None:
    ids = _ids(config)
    if ids is None:
        return
    for path in [home, *home.iterdir()]:
        os.chown(path, *ids)


class KamailioProcess:
    """One running Kamailio for one rendered directory, in the foreground of its session."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.home = Path(config.kamailio.instance_dir)
        self.process: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """Kamailio's own syntax check of the rendered file (-c)."""
        result = subprocess.run(
            [BINARY, "-c", "-f", str(self.home / "kamailio.cfg")],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise KamailioError(f"kamailio.cfg rejected: {result.stderr.strip()[-1500:]}")

    def start(self, wait_seconds: float = 15.0) -> None:
        k = self.config.kamailio
        ids = ["-u", k.user, "-g", k.group] if _ids(self.config) is not None else []
        log = open(self.home / "kamailio.log", "ab", opener=lambda p, f: os.open(p, f, 0o600))
        arguments = [BINARY, "-DD", "-E"]  # -DD: no daemon, our child, stopped with its session
        arguments += ["-f", str(self.home / "kamailio.cfg"), "-P", str(self.home / "kamailio.pid")]
        arguments += ["-Y", str(self.home), "-m", "64", "-M", "8", *ids]  # runtime files here
        self.process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child has its own descriptor
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.home / "kamailio.log").read_text(errors="replace")[-1500:]
                raise KamailioError(f"Kamailio exited at start:\n{tail}")
            try:
                rpc(self.config, "core.version")
                return
            except KamailioError:
                time.sleep(0.2)
        raise KamailioError(f"Kamailio not answering RPC within {wait_seconds:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def rpc(config: Config, method: str, *params: Any, timeout: float = 10.0) -> Any:
    """One JSON-RPC call to Kamailio; its result, or KamailioError with its message."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    request = urllib.request.Request(
        f"http://127.0.0.1:{config.kamailio.rpc_port}/RPC",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read().decode())
    except (OSError, ValueError) as exc:
        raise KamailioError(f"Kamailio RPC {method} failed: {exc}") from None
    if "error" in answer:
        raise KamailioError(f"Kamailio RPC {method}: {answer['error'].get('message', answer)}")
    return answer.get("result")
