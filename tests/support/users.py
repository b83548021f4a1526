"""Users in an exchange's database, and their ways in: the CLI, the sign-in form, API tokens."""

from __future__ import annotations

import re
import subprocess
import sys

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bench.exchange import REPO, Exchange
from tests.support import second_factor

PASSWORD = "correct-horse-battery"


def add_user_with_cli(
    ex: Exchange, name: str, role: str, team: str = "", extension: str = ""
) -> None:
    """`bereik users add`, as an administrator would run it."""
    command = [
        sys.executable,
        "-m",
        "bereik",
        "users",
        "add",
        name,
        "--role",
        role,
        "--password-stdin",
        "--config",
        str(ex.config_path),
    ]
    if team:
        command += ["--team", team]
    if extension:
        command += ["--extension", extension]
    done = subprocess.run(
        command, input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def add_users(ex: Exchange, users: list[tuple[str, str, str, str]]) -> None:
    """(name, role, team, extension) straight into the database (the schema is migrated)."""
    from cti.users.service import create_user

    engine = create_async_engine(ex.async_database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            for name, role, team, extension in users:
                await create_user(session, name, PASSWORD, role, team, extension)
            await session.commit()
    finally:
        await engine.dispose()


async def api_tokens(ex: Exchange, users: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """Users (name, role, team, extension) made directly in the database; their API tokens."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from cti.users.service import create_user, issue_token

    engine = create_async_engine(ex.async_database_url)
    tokens = {}
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            for name, role, team_id, extension in users:
                user = await create_user(session, name, "Wachtwoord-123!", role, team_id, extension)
                tokens[name] = await issue_token(session, user)
            await session.commit()
    finally:
        await engine.dispose()
    return tokens


async def token_for(ex: Exchange, name: str) -> str:
    from sqlalchemy import select

    from cti.store.models import User
    from cti.users.service import issue_token

    engine = create_async_engine(ex.async_database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            user = (await session.execute(select(User).where(User.name == name))).scalar_one()
            token = await issue_token(session, user)
            await session.commit()
            return token
    finally:
        await engine.dispose()


async def sign_in(http: aiohttp.ClientSession, ex: Exchange, name: str) -> str:
    """Sign in through the real form; returns the session's CSRF token."""
    page = await (await http.get(ex.url("/login"))).text()
    form_token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert form_token
    response = await http.post(
        ex.url("/login"),
        data={"name": name, "password": PASSWORD, "login_token": form_token[1], "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303
    location = await second_factor.over_http(
        http, ex.url, f"{ex.url('')}|{name}", response.headers["Location"]
    )
    assert location == "/"
    home = await (await http.get(ex.url("/team"))).text()
    token = re.search(r'name="csrf-token" content="([^"]+)"', home)
    assert token
    return token[1]
