"""`bereik node drain|undrain|status NAME --config FILE`: take a node out and back in."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cti.nodes import service
from cti.services import open_services
from dialplan.config import ConfigError, load
from dialplan.kamailio import KamailioError


def register(subparsers: Any) -> None:
    node = subparsers.add_parser("node", help="the Asterisk nodes behind Kamailio")
    actions = node.add_subparsers(required=True, metavar="ACTION")
    for name, help_text in (
        ("drain", "no new calls or originates to NAME; calls in progress go on"),
        ("undrain", "NAME takes new calls again (once it answers the OPTIONS probe)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("name")
        action.add_argument("--config", type=Path, default=Path("bereik.toml"))
        action.set_defaults(func=cmd_set, action=name)
    status = actions.add_parser("status", help="every node's state as Kamailio sees it")
    status.add_argument("--json", action="store_true")
    status.add_argument("--config", type=Path, default=Path("bereik.toml"))
    status.set_defaults(func=cmd_status)


def cmd_set(args: argparse.Namespace) -> int:
    config = load(args.config)
    # The audit log names the system account that ran the command (the screen: the user).
    try:
        actor = f"cli:{getpass.getuser()}"
    except OSError:  # no name for this uid (a container): still say it was the CLI
        actor = "cli"

    async def main() -> None:
        async with open_services(config) as services:
            await service.set_state(services, args.name, args.action, actor)

    try:
        asyncio.run(main())
    except (KamailioError, ConfigError) as exc:
        print(f"bereik node {args.action}: {exc}", file=sys.stderr)
        return 1
    print(f"node {args.name}: {'drained' if args.action == 'drain' else 'undrained'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        states = service.status(config)
    except KamailioError as exc:
        print(f"bereik node status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(state) for state in states], indent=2))
        return 0
    for state in states:
        probe = "probed" if state.probed else "not probed"
        print(f"{state.name:<8} {state.state:<9} {state.uri:<28} {probe}")
    return 0
