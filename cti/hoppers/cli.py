"""`bereik hoppers list [--team] [--status] [--json]`: the hoppers, from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from cti.audit import audit
from cti.hoppers.service import STATUSES, hopper_json, list_hoppers
from cti.store.db import create_engine, migrate_async, sessions
from dialplan.config import ConfigError, load


def register(subparsers: Any) -> Any:
    """Adds `bereik hoppers`; returns its actions, so other features add theirs."""
    hoppers = subparsers.add_parser("hoppers", help="callback requests (hoppers)")
    actions = hoppers.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list hoppers, oldest deadline first")
    listing.add_argument("--team", default="", help="only this team id")
    listing.add_argument("--status", default="", choices=("", *STATUSES))
    listing.add_argument("--json", action="store_true", help="JSON, one object per hopper")
    listing.add_argument("--config", type=Path, default=Path("bereik.toml"))
    listing.set_defaults(func=cmd_list)
    return actions


def cmd_list(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc)
        return 2

    async def main() -> list[dict[str, Any]]:
        await migrate_async(config.database.url)
        engine = create_engine(config.database.url)
        try:
            async with sessions(engine)() as session:
                found = await list_hoppers(
                    session, teams=[args.team] if args.team else None, status=args.status or None
                )
                data = [hopper_json(h) for h in found]
                for h in found:
                    audit(session, "cli", "view", "hopper", h.id)
                await session.commit()
                return data
        finally:
            await engine.dispose()

    data = asyncio.run(main())
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    for h in data:
        print(
            f"#{h['id']:<5} {h['team']:<14} {h['caller']:<14} {h['reason']:<15} "
            f"{h['status']:<7} uiterlijk {h['deadline'][:16]}"
            + (f"  (+{h['repeat_count']} herhaald)" if h["repeat_count"] else "")
        )
    return 0
