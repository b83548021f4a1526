"""`bereik announce`: put an announcement live from the shell, list them, end one.

    bereik announce "Door een storing is de afvalwijzer niet bereikbaar." \\
        --kind outage --until 2026-12-01T17:00 --config /etc/bereik/bereik.toml
    bereik announce --audio bericht.mp3 --kind news --until 2026-12-24T12:00
    bereik announce --list
    bereik announce --end 7
    bereik announce --change 7 --until 2026-12-02T12:00    (the outage lasts longer)

Times without a timezone are the exchange's local time (Europe/Amsterdam).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from cti.announcements import service
from cti.services import Services, open_services
from dialplan.config import Config, load

T = TypeVar("T")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "announce",
        help="put a spoken announcement live for callers (text or audio file), list, end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="?", default="", help="what callers hear (Dutch)")
    parser.add_argument("--kind", choices=service.KINDS, default="news")
    parser.add_argument("--scope", default="all", help="all, menu:<key> or team:<team id>")
    parser.add_argument(
        "--from", dest="valid_from", default="", help="start, e.g. 2026-12-01T08:00"
    )
    parser.add_argument(
        "--until", default="", help="end, e.g. 2026-12-01T17:00 (none: until ended)"
    )
    parser.add_argument("--priority", type=int, default=0, help="0-100; higher plays first")
    parser.add_argument("--author", default="cli")
    parser.add_argument("--audio", type=Path, help="a wav, mp3 or ogg file instead of text")
    parser.add_argument("--list", action="store_true", help="list active announcements")
    parser.add_argument("--all", action="store_true", help="with --list: also ended/expired")
    parser.add_argument("--end", type=int, metavar="ID", help="end this announcement now")
    parser.add_argument(
        "--change", type=int, metavar="ID", help="give this announcement the --until time"
    )
    parser.add_argument("--config", type=Path, default=Path("bereik.toml"))
    parser.set_defaults(func=cmd_announce)


def parse_time(value: str, timezone: str) -> datetime | None:
    """ISO 8601 time; without an offset it is the exchange's local time."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise service.AnnouncementError(
            f"{value!r} is not a time; use e.g. 2026-12-01T17:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def _run(config: Config, work: Callable[[Services], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_services(config) as services:
            return await work(services)

    return asyncio.run(main())


def _local(iso: str, timezone: str) -> str:
    """An ISO time from the store as the operator reads it: local, to the minute."""
    return f"{datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}"


def _line(a: dict[str, Any], timezone: str) -> str:
    until = _local(a["valid_until"], timezone) if a["valid_until"] else "beëindigd"
    state = "actief" if a["active"] else ("beëindigd" if a["ended_at"] else "niet actief")
    return (
        f"#{a['id']:<4} {a['kind']:<8} {a['scope']:<16} {state:<11} "
        f"vanaf {_local(a['valid_from'], timezone)}  tot {until}  {a['source']:<6} "
        f"{a['text'][:60]}"
    )


def cmd_announce(args: argparse.Namespace) -> int:
    config = load(args.config)
    tz = config.exchange.timezone
    try:
        if args.list:
            found = _run(
                config,
                lambda s: _json_listing(s, only_active=not args.all),
            )
            for item in found:
                print(_line(item, tz))
            if not found:
                print("geen actieve aankondigingen" if not args.all else "geen aankondigingen")
            return 0
        if args.end is not None:

            async def end(s: Services) -> None:
                await service.end(s, args.end, actor=args.author)

            try:
                _run(config, end)
            except LookupError:
                print(f"bereik announce: no announcement #{args.end}")
                return 1
            print(f"announcement #{args.end} ended")
            return 0
        if args.change is not None:
            until = parse_time(args.until, tz)

            async def change(s: Services) -> dict[str, Any]:
                return service.as_json(
                    s, await service.change_until(s, args.change, until, args.author)
                )

            try:
                print(_line(_run(config, change), tz))
            except LookupError:
                print(f"bereik announce: no announcement #{args.change}")
                return 1
            return 0
        if not args.text and args.audio is None:
            print('bereik announce: give the text ("...") or --audio FILE')
            return 2
        draft = service.Draft(
            kind=args.kind,
            text=args.text,
            scope=args.scope,
            valid_from=parse_time(args.valid_from, tz),
            valid_until=parse_time(args.until, tz),
            priority=args.priority,
            author=args.author,
        )

        async def make(s: Services) -> dict[str, Any]:
            created = await service.create(s, draft, upload=args.audio)
            return service.as_json(s, created)

        made = _run(config, make)
    except service.AnnouncementError as exc:
        print(f"bereik announce: {exc}")
        return 1
    print(f"announcement #{made['id']} stored: {'live now' if made['active'] else 'not live now'}")
    print(_line(made, tz))
    return 0


async def _json_listing(s: Services, only_active: bool) -> list[dict[str, Any]]:
    return [service.as_json(s, a) for a in await service.listing(s, only_active)]
