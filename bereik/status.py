"""`bereik status`: each part of the running `bereik serve`, for an operator on the machine.

It asks the process's own /healthz (cti/health.py makes the report; this prints it), so
the operator sees what a monitoring system sees. When the process does not answer, the
parts that can be checked from outside it (database, mail waiting, disk) are checked here
with the same code, and the exit status says the process is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cti.health import Health, format_report
from cti.services import open_services
from dialplan.config import Config, load

# Exit statuses: every part up; a part down; the process does not answer.
OK, DOWN, NOT_RUNNING = 0, 1, 3


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="each part of the running bereik serve (as /healthz), up or down"
    )
    status.add_argument("--config", required=True, type=Path)
    status.add_argument("--json", action="store_true", help="print /healthz's JSON as it is")
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args.config)
    url = healthz_url(config)
    try:
        report = fetch(url, config)
    except (OSError, ValueError) as exc:
        print(f"bereik serve does not answer on {url}: {exc}", file=sys.stderr)
        print("checked from here, without the process's own parts:", file=sys.stderr)
        local = asyncio.run(_check_here(config))
        print(json.dumps(local, indent=1) if args.json else format_report(local))
        return NOT_RUNNING
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return OK if not report.get("down") else DOWN


def healthz_url(config: Config) -> str:
    server = config.server
    host = server.http_host
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: ask over loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls.https else "http"
    return f"{scheme}://{host}:{server.http_port}/healthz"


def fetch(url: str, config: Config, timeout: float = 10) -> dict[str, Any]:
    """/healthz's body; also on a 503, which names the parts that are down."""
    context = None
    if config.tls.https:
        # Our own certificate, whatever name it carries: we asked our own address.
        context = ssl.create_default_context(cafile=config.tls.cert_file)
        context.check_hostname = False
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 503:
            raise
        body = json.loads(exc.read())
    return body


async def _check_here(config: Config) -> dict[str, Any]:
    async with open_services(config) as services:
        return (await Health(services).check()).as_dict()
