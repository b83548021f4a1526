"""`bereik users ...`: manage accounts from the shell (the first admin is made here)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cti.audit import audit
from cti.store.db import create_engine, migrate_async, sessions
from cti.store.models import User
from cti.users import second_factor
from cti.users.service import (
    ROLES,
    TOKEN_DAYS,
    UserError,
    create_user,
    get_user,
    issue_token,
    revoke_sessions,
    revoke_token,
    set_password,
)
from dialplan.config import Config, load


def register(subparsers: Any) -> None:
    users = subparsers.add_parser("users", help="manage the users of the web screens")
    actions = users.add_subparsers(required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--team", default="", help="team id (members and leads)")
    add.add_argument("--extension", default="", help="the user's phone extension")
    add.add_argument("--language", default="nl", choices=("nl", "en"))
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--token", action="store_true", help="also print a new API token")
    add.add_argument("--config", type=Path, default=Path("bereik.toml"))
    add.set_defaults(func=cmd_add)

    password = actions.add_parser(
        "password", help="set a new password (ends the user's open sessions)"
    )
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true")
    password.add_argument("--config", type=Path, default=Path("bereik.toml"))
    password.set_defaults(func=cmd_password)

    token = actions.add_parser("token", help="issue a new API token (replaces the old one)")
    token.add_argument("name")
    token.add_argument(
        "--days", type=int, default=TOKEN_DAYS, help=f"valid this many days ({TOKEN_DAYS})"
    )
    token.add_argument("--config", type=Path, default=Path("bereik.toml"))
    token.set_defaults(func=cmd_token)

    revoke = actions.add_parser("revoke-token", help="make the user's API token stop working")
    revoke.add_argument("name")
    revoke.add_argument("--config", type=Path, default=Path("bereik.toml"))
    revoke.set_defaults(func=cmd_revoke_token)

    reset = actions.add_parser(
        "reset-second-factor",
        help="take a lost second factor away: the user sets up a new one at the next sign-in",
    )
    reset.add_argument("name")
    reset.add_argument("--config", type=Path, default=Path("bereik.toml"))
    reset.set_defaults(func=cmd_reset_second_factor)

    listing = actions.add_parser("list", help="list the users")
    listing.add_argument("--config", type=Path, default=Path("bereik.toml"))
    listing.set_defaults(func=cmd_list)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("the passwords differ")
    return first


def _run(config: Config, work: Any) -> int:
    async def main() -> int:
        await migrate_async(config.database.url)
        engine = create_engine(config.database.url)
        try:
            async with sessions(engine)() as session:
                result: int = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except UserError as exc:
        print(f"bereik users: {exc}", file=sys.stderr)
        return 2


def cmd_add(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.team and args.team not in {team.id for team in config.teams}:
        print(f"bereik users: unknown team {args.team}", file=sys.stderr)
        return 2
    try:
        password = _password(args)
    except UserError as exc:
        print(f"bereik users: {exc}", file=sys.stderr)
        return 2

    async def work(session: Any) -> int:
        user = await create_user(
            session, args.name, password, args.role, args.team, args.extension, args.language
        )
        audit(
            session,
            actor="cli",
            action="create",
            object_type="user",
            object_id=user.id,
            detail=f"role={user.role} team={user.team_id}",
        )
        print(f"added {user.name} ({user.role})")
        if args.token:
            print(await issue_token(session, user))
        return 0

    return _run(config, work)


async def _named(session: Any, name: str) -> Any:
    user = await get_user(session, name)
    if user is None:
        raise UserError(f"no user {name}")
    return user


def cmd_password(args: argparse.Namespace) -> int:
    config = load(args.config)
    password = _password(args)

    async def work(session: Any) -> int:
        user = await _named(session, args.name)
        await set_password(session, user, password)
        audit(session, actor="cli", action="password", object_type="user", object_id=user.id)
        print(f"password of {user.name} set")
        return 0

    return _run(config, work)


def cmd_token(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def work(session: Any) -> int:
        user = await _named(session, args.name)
        print(await issue_token(session, user, days=args.days))
        audit(session, actor="cli", action="token", object_type="user", object_id=user.id)
        return 0

    return _run(config, work)


def cmd_revoke_token(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def work(session: Any) -> int:
        user = await _named(session, args.name)
        revoke_token(user)
        audit(session, actor="cli", action="token_revoke", object_type="user", object_id=user.id)
        print(f"API token of {user.name} revoked")
        return 0

    return _run(config, work)


def cmd_reset_second_factor(args: argparse.Namespace) -> int:
    """For the admin who lost phone and recovery codes, when no other admin can do it on
    the admin screen: run on the server, by someone with access to its configuration."""
    config = load(args.config)

    async def work(session: Any) -> int:
        user = await _named(session, args.name)
        second_factor.reset(user)
        await second_factor.forget_recovery_codes(session, user.id)
        revoke_sessions(user)
        audit(
            session,
            actor="cli",
            action="second_factor_reset",
            object_type="user",
            object_id=user.id,
        )
        print(f"second factor of {user.name} reset; set it up again at the next sign-in")
        return 0

    return _run(config, work)


def cmd_list(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def work(session: Any) -> int:
        for user in (await session.execute(select(User).order_by(User.name))).scalars():
            state = "active" if user.active else "inactive"
            token = (
                f"token until {user.api_token_expires_at:%Y-%m-%d}"
                if user.api_token_hash and user.api_token_expires_at
                else "no token"
            )
            fields = [
                user.name,
                user.role,
                user.team_id or "-",
                user.extension or "-",
                state,
                token,
                "second factor" if second_factor.enrolled(user) else "no second factor",
            ]
            print("\t".join(fields))
        return 0

    return _run(config, work)
