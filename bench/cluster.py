"""Several Asterisk nodes behind Kamailio, for the tests and the bench: one exchange whose
SIP address (the harness's `ports.sip`) is Kamailio's, each node its own Asterisk on its
own ports, and one `bereik serve` with an AMI connection to every node."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.exchange import ARTIFACTS, IVR_FALLBACK, Exchange, free_port
from dialplan.asterisk import AsteriskProcess, Installation
from dialplan.config import load
from dialplan.kamailio import KamailioProcess, render_kamailio
from dialplan.render import render


class Cluster(Exchange):
    """Kamailio in front of `nodes` Asterisk instances; see the module docstring."""

    def __init__(
        self,
        installation: Installation,
        workdir: Path,
        nodes: tuple[str, ...] = ("a", "b"),
        extra_toml: str = "",
        kamailio_toml: str = "",
        **kwargs: Any,
    ) -> None:
        tag = secrets.token_hex(4)
        self.kamailio_dir = workdir / "kamailio"
        tables = "".join(
            f'\n[[nodes]]\nname = "{name}"\nsip_port = {free_port()}\n'
            f'ami_port = {free_port()}\ninstance_dir = "/var/lib/bereik/node-{tag}-{name}"\n'
            for name in nodes
        )
        super().__init__(installation, workdir, extra_toml=extra_toml + tables, **kwargs)
        # Kamailio takes the exchange's SIP port: sipp's calls and phones go there.
        self.config_path.write_text(
            self.config_path.read_text()
            + f"\n[kamailio]\nsip_port = {self.ports.sip}\nrpc_port = {free_port()}\n"
            f'instance_dir = "{self.kamailio_dir}"\nprobe_seconds = 1\n{kamailio_toml}\n'
        )
        self.config = load(self.config_path)
        self.nodes = {
            node.name: AsteriskProcess(installation, node.instance_dir)
            for node in self.config.nodes
        }
        self.kamailio = KamailioProcess(self.config)

    # Asterisk nodes and Kamailio

    def start_asterisk(self) -> None:
        for name in self.nodes:
            self.start_node(name)
        render_kamailio(self.config, self.installation)
        self.kamailio.check()
        self.kamailio.start()

    def start_node(self, name: str) -> None:
        render(self.config.node(name), self.installation)
        self.nodes[name].start()

    def kill_node(self, name: str) -> None:
        """kill -9 of the node's Asterisk: no goodbye to anyone."""
        process = self.nodes[name].process
        assert process is not None and process.poll() is None, f"node {name} is not running"
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_asterisk(self) -> None:
        self.kamailio.stop()
        for node in self.nodes.values():
            node.stop()

    def node_cli(self, name: str, command: str) -> str:
        return self.nodes[name].cli(command)

    def cli(self, command: str) -> str:
        return "".join(node.cli(command) for node in self.nodes.values() if node.running)

    def node_dir(self, name: str) -> Path:
        return self.installation.host_path(self.config.node(name).asterisk.instance_dir)

    def active_channels(self) -> int:
        return sum(self.node_channels(name) for name, node in self.nodes.items() if node.running)

    def node_channels(self, name: str) -> int:
        for line in self.node_cli(name, "core show channels count").splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        raise AssertionError(f"node {name}: no `core show channels count` answer")

    def ivr_fallbacks(self) -> list[str]:
        found: list[str] = []
        for name in self.nodes:
            log = self.node_dir(name) / "log" / "messages.log"
            if log.exists():
                found += IVR_FALLBACK.findall(log.read_text())
        return found

    def close(self) -> None:
        super().close()
        for name in self.nodes:
            target = ARTIFACTS / "logs" / self.name / f"node-{name}"
            with contextlib.suppress(OSError):
                target.mkdir(parents=True, exist_ok=True)
                for log in (self.node_dir(name) / "log").glob("*.log"):
                    shutil.copy(log, target / log.name)
                shutil.copy(self.kamailio_dir / "kamailio.log", target.parent / "kamailio.log")
            shutil.rmtree(self.node_dir(name), ignore_errors=True)


@contextlib.contextmanager
def cluster(installation: Installation, workdir: Path, **kwargs: Any) -> Iterator[Cluster]:
    made = Cluster(installation, workdir, **kwargs)
    try:
        yield made
    finally:
        made.close()
