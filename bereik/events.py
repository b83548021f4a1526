"""`bereik events list|retry`: the work the database refused, kept aside (cti/store/faults.py).

`list` shows each item still aside (its source, when, the error; never the caller's
number: the payload stays in the database). `retry` writes them again, oldest first, after
the cause is fixed; an item refused again stays aside with the new error.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from pathlib import Path
from typing import Any

from cti.callbacks import scheduler
from cti.calls import listener
from cti.privacy import mask_numbers_in
from cti.queue import abandoned, vhold
from cti.queue import events as queue_events
from cti.services import Services, open_services
from cti.store import faults
from dialplan.config import load


def replayers(services: Services) -> dict[str, faults.Replayer]:
    """Each source that sets work aside, and how to write one of its items again."""
    return {
        listener.SOURCE: functools.partial(listener.replay, services),
        queue_events.SOURCE: functools.partial(queue_events.replay, services),
        vhold.SOURCE: functools.partial(vhold.replay, services),
        scheduler.SOURCE: functools.partial(scheduler.replay, services),
        abandoned.SOURCE: functools.partial(abandoned.replay, services),
    }


def register(commands: Any) -> None:
    events = commands.add_parser(
        "events", help="work the database refused and kept aside: list it, or retry it"
    )
    actions = events.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="what is set aside, oldest first")
    listing.add_argument("--config", required=True, type=Path)
    listing.add_argument("--all", action="store_true", help="also what was replayed")
    listing.set_defaults(func=cmd_list)
    retry = actions.add_parser("retry", help="write what is set aside again (after a fix)")
    retry.add_argument("--config", required=True, type=Path)
    retry.add_argument("ids", nargs="*", type=int, help="only these items (default: all)")
    retry.set_defaults(func=cmd_retry)


def cmd_list(args: argparse.Namespace) -> int:
    rows = asyncio.run(_list(load(args.config), args.all))
    if not rows:
        print("nothing set aside")
    for row in rows:
        state = f"replayed {row.replayed_at:%Y-%m-%d %H:%M:%S}" if row.replayed_at else "aside"
        kind = row.payload.get("effect") or row.payload.get("Event") or ""
        print(
            f"{row.id:>6}  {row.set_aside_at:%Y-%m-%d %H:%M:%S}  {row.source:<20}  "
            f"{kind:<12}  {state}  retries {row.retries}  {mask_numbers_in(row.error)}"
        )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    results = asyncio.run(_retry(load(args.config), args.ids or None))
    if not results:
        print("nothing set aside")
    for result in results:
        print(
            f"{result.id:>6}  {result.source:<20}  {'written' if result.ok else 'still aside'}"
            + ("" if result.ok else f": {mask_numbers_in(result.error)}")
        )
    left = [result for result in results if not result.ok]
    if left:
        print(f"{len(left)} still aside; see bereik events list", file=sys.stderr)
    return 1 if left else 0


async def _list(config: Any, all_rows: bool) -> list[Any]:
    async with open_services(config) as services:
        return await faults.listing(services.sessions, all_rows=all_rows)


async def _retry(config: Any, ids: list[int] | None) -> list[faults.Replayed]:
    async with open_services(config) as services:
        return await faults.replay(services.sessions, replayers(services), ids)
