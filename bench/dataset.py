"""Realistic data for the Bereik rows: 50 teams, 100,000 closed and 1,000 open hoppers.

Realistic also in age: a backlog past the retention would have the daily purge
(cti/retention.py) delete it all in one transaction at start, holding SQLite's write lock
for minutes, which measures the purge instead of the call path.

Teams live in the config (TOML); hoppers and announcements in the database, written with
bulk inserts (one executemany per 10,000 rows) so the set is ready in seconds.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert

from cti.store.db import migrate
from cti.store.models import Announcement, Hopper

TEAMS = 50
CLOSED_HOPPERS = 100_000
OPEN_HOPPERS = 1_000
REASONS = ("no_answer", "busy", "nobody_present", "after_hours", "manual")
BATCH = 10_000


def team_id(index: int) -> str:
    return f"team{index:02d}"


def teams_toml(count: int = TEAMS) -> str:
    return "\n".join(
        f'[[teams]]\nid = "{team_id(i)}"\nname = "Team {i}"\nnumber = "{7100 + i}"\n'
        f'mailbox = "{team_id(i)}@gemeente.example"\n'
        for i in range(count)
    )


def fill(url: str, closed: int = CLOSED_HOPPERS, open_: int = OPEN_HOPPERS) -> None:
    """Migrate the database at `url` (sqlite:///...) and fill it; deterministic (seeded)."""
    migrate(url)
    rng = random.Random(14070)
    now = datetime.now(UTC).replace(microsecond=0)
    engine = create_engine(url)
    with engine.begin() as connection:
        rows: list[dict[str, object]] = []
        for number in range(closed + open_):
            is_open = number >= closed
            # As a running system holds them: closed ones within the retention (the purge
            # keeps 90 days), open ones from the last three days (older ones get called back).
            age_days = 3 if is_open else 80
            created = now - timedelta(minutes=rng.randint(10, age_days * 24 * 60))
            closed_at = None if is_open else created + timedelta(hours=rng.randint(1, 96))
            rows.append(
                {
                    "team_id": team_id(rng.randrange(TEAMS)),
                    "caller": f"06{rng.randrange(10**8):08d}",
                    "reason": rng.choice(REASONS),
                    "note": "Vraag over een vergunning; graag terugbellen in de middag.",
                    "call_uniqueid": f"bench.{number}",
                    "created_at": created,
                    "deadline": created + timedelta(days=2),
                    "status": "open" if is_open else "closed",
                    "closed_at": closed_at,
                    "closed_by": "" if is_open else "medewerker",
                    "closing_reason": "" if is_open else "called_back",
                    "within_norm": None if is_open else closed_at <= created + timedelta(days=2),  # type: ignore[operator]
                }
            )
            if len(rows) == BATCH:
                connection.execute(insert(Hopper), rows)
                rows = []
        if rows:
            connection.execute(insert(Hopper), rows)
        connection.execute(
            insert(Announcement),
            [
                {
                    # Scheduled, not yet valid: the look-up finds it, the caller hears nothing
                    # (a played announcement would measure its seconds of audio, not our code).
                    "text": "Door onderhoud is de website morgen niet bereikbaar.",
                    "kind": "outage",
                    "scope": "all",
                    "valid_from": now + timedelta(days=1),
                    "valid_until": now + timedelta(days=2),
                },
                {
                    "text": "Het gemeentehuis is op Koningsdag gesloten.",
                    "kind": "closure",
                    "scope": "all",
                    "valid_from": now - timedelta(days=30),
                    "valid_until": now - timedelta(days=29),
                },
            ],
        )
    engine.dispose()
