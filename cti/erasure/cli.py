"""`bereik privacy erase NUMBER`: remove every trace of a caller's number (GDPR art. 17).

Prints what it removed, one line per kind with its count (``--json``: one object), and
writes one audit row (actor ``cli`` or ``--actor``, the number masked). Asks for no
confirmation: the person running it has the request in hand; it is meant to be run once
the request is verified, and cannot be undone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cti.erasure.service import EraseError, erase
from cti.privacy import mask_number, national
from cti.services import open_services
from dialplan.config import load


def register(commands: Any) -> None:
    privacy = commands.add_parser("privacy", help="callers' personal data: erase a number")
    actions = privacy.add_subparsers(required=True, metavar="ACTION")
    erasing = actions.add_parser(
        "erase", help="remove every trace of a number (calls, hoppers, recordings, mails...)"
    )
    erasing.add_argument("number", help="the caller's number (06..., +316..., 00316...)")
    erasing.add_argument("--config", type=Path, default=Path("bereik.toml"))
    erasing.add_argument("--actor", default="cli", help="who asked, for the audit log")
    erasing.add_argument("--json", action="store_true", help="the counts as one JSON object")
    erasing.set_defaults(func=cmd_erase)


def cmd_erase(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def main() -> dict[str, int]:
        async with open_services(config) as services:
            return (await erase(services, args.number, args.actor)).counts()

    try:
        counts = asyncio.run(main())
    except EraseError as exc:
        print(f"bereik: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(counts))
        return 0
    shown = mask_number(national(args.number))
    print(f"erased every trace of {shown}: {sum(counts.values())} in all")
    for kind, count in counts.items():
        print(f"  {kind:<22} {count}")
    return 0
