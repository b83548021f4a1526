"""/healthz names each part and answers 503 while any is down; `bereik status` prints it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from cti.health import Health, format_report
from cti.services import Services
from cti.store.models import OutboxMail
from cti.supervisor import Supervisor
from cti.web.app import create_app
from dialplan.config import Config
from tests.support.memory_services import TWO_TEAMS, memory_services


def config(**mail: Any) -> Config:
    return Config.model_validate({**TWO_TEAMS, "mail": mail})


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with memory_services(config(late_seconds=60), tmp_path) as services:
        yield services


async def healthz(health: Health) -> tuple[int, dict[str, Any]]:
    async with TestClient(TestServer(create_app(health.services, [health.setup]))) as client:
        response = await client.get("/healthz")
        return response.status, await response.json()


async def test_every_part_up_answers_200_and_lists_each_part(services: Services) -> None:
    supervisor = Supervisor(services.metrics)

    async def outbox() -> None:
        await asyncio.Event().wait()

    supervisor.add("outbox", outbox)
    supervisor.start()
    try:
        await asyncio.sleep(0)
        status, body = await healthz(Health(services, supervisor, agi=lambda: True))
    finally:
        await supervisor.stop()
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["down"] == []
    assert set(body["parts"]) == {"database", "outbox", "mail", "fastagi", "disk"}
    assert body["parts"]["outbox"]["detail"] == "running"
    assert body["parts"]["mail"]["detail"] == "no mail waiting"
    assert body["database"] == "ok"


async def test_a_crashed_part_waiting_for_its_restart_gives_503_naming_it(
    services: Services,
) -> None:
    supervisor = Supervisor(services.metrics, backoff_min=30)
    crashed = asyncio.Event()

    async def listener() -> None:
        crashed.set()
        raise RuntimeError("constraint failed")

    supervisor.add("call listener", listener)
    supervisor.start()
    try:
        health = Health(services, supervisor)
        await crashed.wait()
        await asyncio.sleep(0.01)  # the supervisor marks it down
        status, body = await healthz(health)
        assert health.down_now() == ["call listener"]
    finally:
        await supervisor.stop()
    assert status == 503
    assert body["down"] == ["call listener"]
    part = body["parts"]["call listener"]
    assert part["ok"] is False
    assert part["restarts"] == 1
    assert "RuntimeError: constraint failed" in part["detail"]


async def test_a_mail_waiting_longer_than_late_seconds_gives_503_naming_the_mail(
    services: Services,
) -> None:
    async with services.sessions() as session:
        session.add(
            OutboxMail(
                key="hopper-1",
                recipient="bz@example.org",
                subject="Terugbelverzoek",
                body="...",
                created_at=datetime.now(UTC) - timedelta(seconds=90),
            )
        )
        await session.commit()
    status, body = await healthz(Health(services))
    assert status == 503
    assert body["down"] == ["mail"]
    assert body["parts"]["mail"]["waiting"] == 1
    assert body["parts"]["mail"]["oldest_seconds"] >= 90
    assert "SMTP" in body["parts"]["mail"]["detail"]
    async with services.sessions() as session:
        await session.execute(update(OutboxMail).values(sent_at=datetime.now(UTC)))
        await session.commit()
    status, body = await healthz(Health(services))
    assert status == 200, body


async def test_too_little_free_disk_in_the_instance_directory_gives_503(
    tmp_path: Path,
) -> None:
    tight = Config.model_validate({**TWO_TEAMS, "server": {"disk_free_mb": 10**9}})
    async with memory_services(tight, tmp_path / "instance") as services:
        status, body = await healthz(Health(services))
    assert status == 503
    assert body["down"] == ["disk"]
    assert str(tmp_path) in body["parts"]["disk"]["detail"]  # the nearest existing parent


async def test_a_fastagi_socket_that_does_not_listen_is_down(services: Services) -> None:
    status, body = await healthz(Health(services, agi=lambda: False))
    assert status == 503
    assert body["parts"]["fastagi"] == {"ok": False, "detail": "not listening"}


async def test_a_database_that_does_not_answer_is_down_and_named(tmp_path: Path) -> None:
    async with memory_services(config(), tmp_path) as services:
        engine = services.sessions.kw["bind"]
        await engine.dispose()
        services.sessions.configure(bind=_unreachable())
        status, body = await healthz(Health(services))
    assert status == 503
    assert "database" in body["down"]
    assert body["database"] == "error"
    assert "mail" not in body["parts"]  # not asked of a database that is down


def _unreachable() -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    # A file in a directory that does not exist: SQLite cannot open it.
    return create_async_engine("sqlite+aiosqlite:////nonexistent/dir/bereik.db")


def test_status_prints_each_part_and_what_is_down() -> None:
    text = format_report(
        {
            "down": ["outbox"],
            "parts": {
                "database": {"ok": True, "detail": "answers"},
                "outbox": {"ok": False, "detail": "3 mails waiting, the oldest for 120 s"},
            },
        }
    )
    assert text.splitlines() == [
        "ok    database  answers",
        "DOWN  outbox    3 mails waiting, the oldest for 120 s",
        "down: outbox",
    ]


def status_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "bereik.toml"
    path.write_text(
        f'[server]\nhttp_port = {port}\n[database]\nurl = "sqlite:///{tmp_path}/bereik.db"\n'
        f'[asterisk]\ninstance_dir = "{tmp_path}/asterisk"\n'
    )
    return path


async def test_bereik_status_prints_the_running_process_parts_and_exits_1_when_one_is_down(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bereik.cli import main

    server = TestServer(create_app(services, [Health(services, agi=lambda: False).setup]))
    async with TestClient(server):
        path = status_config(tmp_path, server.port or 0)
        code = await asyncio.to_thread(main, ["status", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "DOWN  fastagi   not listening" in out
    assert "ok    database  answers" in out
    assert out.rstrip().endswith("down: fastagi")


async def test_bereik_status_checks_what_it_can_itself_when_serve_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.exchange import free_port
    from bereik.cli import main

    path = status_config(tmp_path, free_port())
    code = await asyncio.to_thread(main, ["status", "--config", str(path)])
    captured = capsys.readouterr()
    assert code == 3
    assert "bereik serve does not answer on http://127.0.0.1:" in captured.err
    assert "ok    database" in captured.out
    assert "ok    mail" in captured.out


async def test_the_wall_screen_names_a_part_that_is_down_in_its_status_line(
    services: Services,
) -> None:
    from cti.calls import pages as calls_pages
    from cti.users.service import create_user, issue_token

    async with services.sessions() as session:
        lead = await create_user(session, "sam", "geheim-wachtwoord", "supervisor")
        token = {"Authorization": f"Bearer {await issue_token(session, lead)}"}
        await session.commit()
    supervisor = Supervisor(services.metrics, backoff_min=30)
    crashed = asyncio.Event()

    async def outbox() -> None:
        crashed.set()
        raise RuntimeError("SMTP said 421")

    supervisor.add("outbox", outbox)
    health = Health(services, supervisor)
    app = create_app(services, [health.setup, calls_pages.setup])
    supervisor.start()
    try:
        async with TestClient(TestServer(app)) as client:
            await crashed.wait()
            await asyncio.sleep(0.01)  # the supervisor marks it down
            board = await client.get("/api/board", headers=token)
            assert (await board.json())["down"] == ["outbox"]
            page = await (await client.get("/board", headers=token)).text()
    finally:
        await supervisor.stop()
    line = page.split('id="board-status"', 1)[1].split("</p>", 1)[0]
    assert 'role="status"' in line
    assert "Storing: outbox werkt niet" in line


async def test_a_crash_naming_a_caller_s_number_shows_it_masked_on_healthz(
    services: Services,
) -> None:
    supervisor = Supervisor(services.metrics, backoff_min=30)
    crashed = asyncio.Event()

    async def listener() -> None:
        crashed.set()
        raise ValueError("caller 0612345678 refused\n[parameters: ('0612345678',)]")

    supervisor.add("call listener", listener)
    supervisor.start()
    try:
        await crashed.wait()
        await asyncio.sleep(0.01)
        _, body = await healthz(Health(services, supervisor))
    finally:
        await supervisor.stop()
    detail = body["parts"]["call listener"]["detail"]
    assert "refused" in detail and "0612345678" not in detail
    assert "parameters" not in detail  # the first line only
