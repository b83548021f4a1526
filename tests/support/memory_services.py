"""Services on a fresh in-memory SQLite database, for unit tests that need no migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cti.services import Services
from cti.store.models import Base
from cti.tts import engine_for
from dialplan.config import Config
from metrics.registry import BereikMetrics

# Two teams with a member each: the configuration of the access tests.
TWO_TEAMS: dict[str, Any] = {
    "phones": [{"extension": "3001"}, {"extension": "3101"}],
    "teams": [
        {
            "id": "burgerzaken",
            "name": "Burgerzaken",
            "number": "7001",
            "members": ["3001"],
            "mailbox": "bz@example.org",
        },
        {
            "id": "belastingen",
            "name": "Belastingen",
            "number": "7002",
            "members": ["3101"],
            "mailbox": "bel@example.org",
        },
    ],
}


@asynccontextmanager
async def memory_services(
    config: Config, data_dir: Path, metric_teams: Iterable[str] | None = None
) -> AsyncIterator[Services]:
    """Services with the tables created from the models; metrics for the config's teams
    unless ``metric_teams`` names others. The engine is disposed of on the way out."""
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    teams = [t.id for t in config.teams] if metric_teams is None else list(metric_teams)
    try:
        yield Services(
            config,
            async_sessionmaker(engine, expire_on_commit=False),
            BereikMetrics(teams=teams),
            data_dir,
            engine_for(config.tts),
        )
    finally:
        await engine.dispose()


CONFIG = Config.model_validate(
    {
        "kcc": {"agents": ["2001"], "supervisor_mailbox": "kcc@example.org"},
        "categories": {"kapvergunning": "vergunningen"},
        "phones": [
            {"extension": "2001", "name": "KCC Anna"},
            {"extension": "3001"},
            {"extension": "3101"},
        ],
        "teams": [
            {
                "id": "vergunningen",
                "name": "Vergunningen",
                "number": "7001",
                "members": ["3001"],
                "mailbox": "verg@example.org",
            },
            {
                "id": "stadsbeheer",
                "name": "Stadsbeheer",
                "number": "7002",
                "members": ["3101"],
                "mailbox": "sb@example.org",
                "norm_working_days": 3,
            },
        ],
    }
)
