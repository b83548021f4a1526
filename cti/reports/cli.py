"""`bereik report`: the figures of a month or ISO week, per team and employee, as CSV or HTML."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cti.reports.figures import (
    PeriodError,
    add_first_line,
    add_survey,
    build_report,
    parse_period,
)
from cti.reports.render import to_csv, to_html
from cti.reports.service import teams_of
from cti.store.db import create_engine, migrate_async, sessions
from dialplan.config import Config, load


def register(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report", help="figures per team and employee for a month or week (CSV or HTML)"
    )
    report.add_argument("--config", type=Path, default=Path("bereik.toml"))
    report.add_argument(
        "--period",
        required=True,
        help="a month (2026-11), ISO week (2026-W48) or days (2026-11-02..2026-11-15)",
    )
    report.add_argument("--team", action="append", default=[], help="team id (repeatable)")
    report.add_argument("--format", choices=("csv", "html"), default="csv")
    report.add_argument("--output", "-o", type=Path, help="write to this file (default: stdout)")
    report.set_defaults(func=cmd_report)


async def render_report(config: Config, period_text: str, teams: list[str], fmt: str) -> str:
    period = parse_period(period_text)
    selected = teams_of(config, teams)
    await migrate_async(config.database.url)
    engine = create_engine(config.database.url)
    try:
        async with sessions(engine)() as session:
            report = await build_report(
                session,
                period,
                selected,
                config.exchange.timezone,
                short_abandon_seconds=config.queue.short_abandon_seconds,
            )
            await add_survey(session, report, config)
            await add_first_line(session, report, config)
    finally:
        await engine.dispose()
    if fmt == "csv":
        return to_csv(report)
    names = {phone.extension: phone.name for phone in config.phones}
    return to_html(report, config.exchange.name, names)


def cmd_report(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        text = asyncio.run(render_report(config, args.period, args.team, args.format))
    except PeriodError as exc:
        print(f"bereik report: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
