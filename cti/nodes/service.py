"""Drain, undrain and status of the Asterisk nodes: Kamailio's dispatcher states are the truth.

A drained node gets no new call from Kamailio (dispatcher state "d", never probed back)
and no originate from Bereik (``watch`` keeps ``AmiNodes.drained`` current); calls in
progress on it go on, as their requests follow the Record-Route, not the dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cti.ami.nodes import AmiNodes
from cti.audit import audit
from cti.services import Services
from dialplan.config import Config, ConfigError
from dialplan.kamailio import DRAINED, SET, UNDRAINED, KamailioError, rpc

log = logging.getLogger("bereik.nodes")

# Kamailio's first FLAGS letter, in words.
STATES = {"A": "active", "I": "inactive", "T": "trying", "D": "drained"}
WATCH_SECONDS = 1.0


@dataclass(frozen=True)
class NodeState:
    name: str
    uri: str
    state: str  # active, inactive (failed its probe or a call), trying, drained
    probed: bool


def status(config: Config) -> list[NodeState]:
    """Every configured node as Kamailio's dispatcher sees it now."""
    found = {state.name: state for state in _parse(rpc(config, "dispatcher.list"))}
    missing = [node.name for node in config.nodes if node.name not in found]
    if missing:
        raise KamailioError(f"Kamailio does not list node(s) {', '.join(missing)}: render again")
    return [found[node.name] for node in config.nodes]


async def listing(config: Config) -> list[NodeState]:
    """`status` without blocking the event loop; no nodes configured: an empty list
    (one Asterisk, no Kamailio to ask)."""
    if not config.nodes:
        return []
    return await asyncio.to_thread(status, config)


def _parse(result: Any) -> list[NodeState]:
    states = []
    for record in (result or {}).get("RECORDS", []):
        for target in record.get("SET", {}).get("TARGETS", []):
            dest = target.get("DEST", {})
            flags = str(dest.get("FLAGS", "??"))
            states.append(
                NodeState(
                    name=str(dest.get("ATTRS", {}).get("DUID", "")),
                    uri=str(dest.get("URI", "")),
                    state=STATES.get(flags[:1], flags),
                    probed=flags[1:2] == "P",
                )
            )
    return states


ACTIONS = ("drain", "undrain")


async def set_state(services: Services, name: str, action: str, actor: str) -> None:
    """Drain or undrain node `name`, and write who did it to the audit log: the one path
    for the command line and the admin screen.

    Kamailio is asked first; only a change it made is audited. An unknown name is a
    ConfigError and Kamailio's refusal a KamailioError, each with a message to show.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown node action {action!r}")
    config = services.config
    config.node(name)  # an unknown name is a clear error, before Kamailio is asked
    state = DRAINED if action == "drain" else UNDRAINED
    await asyncio.to_thread(rpc, config, "dispatcher.set_duid_state", state, SET, name)
    log.info("node %s: %sed by %s", name, action, actor)
    async with services.sessions() as session:
        audit(session, actor, action, "node", name)
        await session.commit()


async def watch(
    services: Services, on_lost: Callable[[str], Awaitable[None]] | None = None
) -> None:
    """Keep the AMI face's drained set equal to Kamailio's, so originates avoid them, and
    tell `on_lost` once when a node is gone: its AMI connection down and Kamailio's probes
    failing too (either alone may be a network hiccup while the node carries its calls;
    both together is a dead node, or one cut off from trunk and phones alike).

    Kamailio unreachable: the last known set stays (an originate to a node that is up
    is still answered); it is logged once per outage.
    """
    ami = services.ami
    if not isinstance(ami, AmiNodes):
        return
    failing = False
    lost: set[str] = set()
    while True:
        try:
            states = await asyncio.to_thread(status, services.config)
            drained = {s.name for s in states if s.state == "drained"}
            if drained != ami.drained:
                log.info("drained nodes now: %s", ", ".join(sorted(drained)) or "none")
            ami.drained = drained
            failing = False
            for state in states:
                client = ami.clients.get(state.name)
                if client is None or client.connected:
                    lost.discard(state.name)
                elif state.state == "inactive" and state.name not in lost:
                    lost.add(state.name)
                    log.warning("node %s is gone: its calls end as interrupted", state.name)
                    if on_lost is not None:
                        await on_lost(state.name)
        except (KamailioError, ConfigError) as exc:
            if not failing:
                log.warning("node states unknown (%s); keeping %s", exc, sorted(ami.drained))
            failing = True
        await asyncio.sleep(WATCH_SECONDS)
