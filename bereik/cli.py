"""The `bereik` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from bereik.backup import register as backup_register
from bereik.demo import run_demo
from bereik.events import register as events_register
from bereik.serve import serve
from bereik.status import register as status_register
from bereik.tls import register as tls_register
from cti.announcements import cli as announcements_cli
from cti.callbacks import cli as callbacks_cli
from cti.erasure import cli as erasure_cli
from cti.hoppers import cli as hoppers_cli
from cti.nodes import cli as nodes_cli
from cti.reports import cli as reports_cli
from cti.users import cli as users_cli
from dialplan import asterisk, clock
from dialplan.config import Config, ConfigError, load
from dialplan.private import UMASK
from dialplan.render import render

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "bereik.example.toml"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything bereik writes (database, rendered secrets, spoken numbers, an Asterisk it
    # starts and that one's recordings and logs) is readable by its own user only.
    os.umask(UMASK)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"bereik: {exc}", file=sys.stderr)
        return 2
    except asterisk.InstallError as exc:
        print(f"bereik: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bereik", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run FastAGI, the AMI listener and the web server")
    serve.add_argument("--config", required=True, type=Path)
    serve.set_defaults(func=cmd_serve)

    ast = commands.add_parser("asterisk", help="install, configure and run Asterisk")
    ast_commands = ast.add_subparsers(required=True, metavar="ACTION")
    install = ast_commands.add_parser("install", help="provide Asterisk 22 (cached)")
    install.set_defaults(func=cmd_asterisk_install)
    render = ast_commands.add_parser("render", help="write the Asterisk configuration")
    render.add_argument("--config", required=True, type=Path)
    render.add_argument("--out", type=Path, help="directory (default: the instance's etc)")
    render.set_defaults(func=cmd_asterisk_render)

    up = commands.add_parser("up", help="the demo: Asterisk and bereik serve, example config")
    up.add_argument("--config", type=Path, default=EXAMPLE_CONFIG)
    up.add_argument(
        "--nodes", type=int, default=0, help="run N Asterisk nodes behind Kamailio (2 or more)"
    )
    up.set_defaults(func=cmd_up)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path, nargs="?")
    check.add_argument("--config", type=Path)
    check.set_defaults(func=cmd_check_config)

    # Sub-commands that live with their feature; `bereik hoppers due` with the callback clock.
    announcements_cli.register(commands)
    callbacks_cli.add_due(hoppers_cli.register(commands))
    users_cli.register(commands)
    nodes_cli.register(commands)
    reports_cli.register(commands)
    tls_register(commands)
    status_register(commands)
    events_register(commands)
    backup_register(commands)
    erasure_cli.register(commands)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config or args.file
    if path is None:
        print("bereik check-config: give the configuration file", file=sys.stderr)
        return 2
    load(path)
    print(f"{path}: ok")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        clock.check_clock()
    except clock.ClockError as exc:
        print(f"bereik serve: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


def cmd_asterisk_install(args: argparse.Namespace) -> int:
    asterisk.install(progress=lambda line: print(line, flush=True))
    return 0


def cmd_asterisk_render(args: argparse.Namespace) -> int:
    config = load(args.config)
    etc = render(config, asterisk.require(), args.out)
    print(f"wrote the Asterisk configuration to {etc}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    config: Config = load(args.config)
    if args.nodes == 1 or args.nodes < 0:
        print("bereik up: --nodes takes 2 or more (without it: one Asterisk)", file=sys.stderr)
        return 2
    return run_demo(config, args.config, args.nodes)
