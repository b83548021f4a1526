"""Long reads for the figures never hold the calls' own database connection (SQLite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from cti.services import open_services
from cti.store.models import Hopper
from dialplan.config import load


async def test_a_call_writes_while_a_figures_query_holds_its_connection(tmp_path: Path) -> None:
    path = tmp_path / "bereik.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "bereik.db"}"\n')
    async with open_services(load(path)) as services:
        async with services.reads() as figures:
            # An aggregate over weeks of calls takes seconds on a large database: here its
            # session simply stays open, in the middle of a read.
            await figures.scalar(select(func.count()).select_from(Hopper))

            async def a_call_makes_a_hopper() -> None:
                async with services.sessions() as session, session.begin():
                    session.add(
                        Hopper(
                            team_id="kcc",
                            caller="0612345678",
                            reason="no_answer",
                            deadline=datetime.now(UTC) + timedelta(days=2),
                        )
                    )

            await asyncio.wait_for(a_call_makes_a_hopper(), timeout=5)
        async with services.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Hopper)) == 1
