"""`bereik hoppers due`: what falls due today per team, and what is already overdue.

Registered under the teams' ``bereik hoppers`` command (cti/hoppers/cli.py calls
``add_due``). Full numbers are shown: the command is for the people who call back.
Every hopper listed gets an audit row (actor ``cli``), as a view in the web UI does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cti.audit import audit
from cti.hoppers.service import opening_hours
from cti.store.db import create_engine, migrate_async, sessions
from cti.store.models import Hopper
from dialplan.config import Config, ConfigError, load


def add_due(actions: Any) -> None:
    due = actions.add_parser("due", help="open hoppers due today (and overdue), per team")
    due.add_argument("--team", default="", help="only this team id")
    due.add_argument("--json", action="store_true", help="JSON instead of a table")
    due.add_argument("--config", type=Path, default=Path("bereik.toml"))
    due.set_defaults(func=cmd_due)


@dataclass(frozen=True)
class DueItem:
    team: str
    id: int
    caller: str
    deadline: datetime
    overdue: bool
    claimed_by: str
    attempts: int


async def due_today(config: Config, now: datetime, team: str = "") -> list[DueItem]:
    """Open hoppers whose deadline is today (local date) or already past, per team."""
    hours = opening_hours(config)
    today = now.astimezone(hours.tz).date()
    engine = create_engine(config.database.url)
    try:
        async with sessions(engine)() as session, session.begin():
            query = select(Hopper).where(Hopper.status == "open")
            if team:
                query = query.where(Hopper.team_id == team)
            found = [
                h
                for h in (await session.execute(query.order_by(Hopper.deadline))).scalars()
                if h.deadline.astimezone(hours.tz).date() <= today
            ]
            items = []
            for h in found:
                await session.refresh(h, ["attempts"])
                items.append(
                    DueItem(
                        team=h.team_id,
                        id=h.id,
                        caller=h.caller,
                        deadline=h.deadline,
                        overdue=h.deadline < now,
                        claimed_by=h.claimed_by,
                        attempts=len(h.attempts),
                    )
                )
                audit(session, "cli", "view", "hopper", h.id, detail="hoppers due")
            return sorted(items, key=lambda i: (i.team, i.deadline, i.id))
    finally:
        await engine.dispose()


def cmd_due(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc)
        return 2

    async def main() -> list[DueItem]:
        await migrate_async(config.database.url)
        return await due_today(config, datetime.now(UTC), args.team)

    items = asyncio.run(main())
    tz = opening_hours(config).tz
    if args.json:
        data: list[dict[str, Any]] = [
            {**item.__dict__, "deadline": item.deadline.isoformat()} for item in items
        ]
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    if not items:
        print("Vandaag valt niets af: geen openstaande terugbelverzoeken met termijn vandaag.")
        return 0
    team = None
    for item in items:
        if item.team != team:
            team = item.team
            count = sum(1 for i in items if i.team == team)
            print(f"\n{team} ({count})")
        state = "VERLOPEN" if item.overdue else "vandaag "
        owner = f"opgepakt: {item.claimed_by}" if item.claimed_by else "niet opgepakt"
        print(
            f"  #{item.id:<5} {item.caller:<14} {state} {item.deadline.astimezone(tz):%d-%m %H:%M}"
            f"  pogingen: {item.attempts}  {owner}"
        )
    return 0
