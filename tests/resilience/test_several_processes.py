"""Several `bereik serve` on one PostgreSQL database share the work and do it once.

5. Outbox: three processes send the due mails; first undisturbed, then with `kill -9`s of
   random processes (each restarted at once). Every mail arrives; in the undisturbed
   round none twice. Under kills a mail may arrive twice only when its process died
   between the server's "250 OK" and the commit that marks it sent (the outbox is
   at-least-once there, cti/outbox.py): the test counts and prints those, at most one per kill.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path

from sqlalchemy import create_engine, insert

from cti.store.db import migrate_async
from cti.store.models import OutboxMail
from dialplan import asterisk
from tests.e2e.harness import Exchange, ServeProcess, exchange, until
from tests.e2e.mail import Smtp
from tests.postgres import PostgresCluster
from tests.resilience.figures import Figures

PROCESSES = 3
CALM_MAILS = 500
KILLED_MAILS = 1000
KILLS = 6


def queue_mails(ex: Exchange, prefix: str, count: int) -> None:
    engine = create_engine(ex.sync_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(OutboxMail),
                [
                    {
                        "key": f"{prefix}-{n}",
                        "recipient": "team@gemeente.example",
                        "subject": f"{prefix} {n}",
                        "body": "Terugbelverzoek",
                    }
                    for n in range(count)
                ],
            )
    finally:
        engine.dispose()


def unsent(ex: Exchange) -> int:
    return int(ex.rows("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].n)


def received(smtp: Smtp, prefix: str) -> collections.Counter[str]:
    return collections.Counter(
        str(m["X-Bereik-Outbox"])
        for m in smtp.mailbox.messages
        if str(m["X-Bereik-Outbox"]).startswith(f"{prefix}-")
    )


async def test_three_processes_send_each_outbox_mail_once_through_random_kills(
    installation: asterisk.Installation,
    tmp_path: Path,
    postgres: PostgresCluster,
    figures: Figures,
) -> None:
    with exchange(installation, tmp_path, database_url=postgres.new_database()) as ex:
        await migrate_async(ex.database_url)
        smtp = Smtp(ex.ports.smtp)
        smtp.start()
        serves: list[ServeProcess] = [ex.add_serve() for _ in range(PROCESSES)]
        try:

            # Undisturbed: the three start at once on the same due mails.
            queue_mails(ex, "calm", CALM_MAILS)
            started = time.monotonic()
            for serve in serves:
                serve.start(wait=False)
            for serve in serves:
                serve.wait_ready()
            await until(lambda: unsent(ex) == 0, timeout=120)
            calm_seconds = time.monotonic() - started
            calm = received(smtp, "calm")
            figures["processes"] = PROCESSES
            figures["mails, undisturbed"] = CALM_MAILS
            figures["sent in s"] = round(calm_seconds, 1)
            figures["duplicates, undisturbed"] = sum(n - 1 for n in calm.values())
            shares = [serve.log.read_text().count("mail calm-") for serve in serves]
            figures["sent per process, undisturbed"] = "/".join(map(str, shares))
            assert len(calm) == CALM_MAILS
            assert all(shares), "each process sends a share"
            assert max(calm.values()) == 1, "no mail twice when no process dies"

            # kill -9 of a random process every 0.5-2 s while 1000 mails are due.
            seed = random.randrange(1_000_000)
            chance = random.Random(seed)
            queue_mails(ex, "killed", KILLED_MAILS)
            started = time.monotonic()
            for _ in range(KILLS):
                await asyncio.sleep(chance.uniform(0.5, 2.0))
                victim = chance.choice(serves)
                victim.stop(kill=True)
                victim.start(wait=False)
            # A killed process's claim runs out (cti/outbox.py CLAIM_SECONDS) before
            # another sends what it held.
            await until(lambda: unsent(ex) == 0, timeout=180)
            killed_seconds = time.monotonic() - started
            killed = received(smtp, "killed")
            duplicates = sum(n - 1 for n in killed.values())
            figures["random seed"] = seed
            figures["mails, with kills"] = KILLED_MAILS
            figures["kill -9s"] = KILLS
            figures["all sent in s"] = round(killed_seconds, 1)
            figures["duplicates, with kills"] = duplicates
            assert len(killed) == KILLED_MAILS, "every mail arrives"
            assert duplicates <= KILLS, "at most the one mail in flight per kill"
            rows = ex.rows(
                "SELECT count(*) AS n FROM outbox "
                "WHERE sent_at IS NOT NULL AND claimed_until IS NULL"
            )
            assert rows[0].n == CALM_MAILS + KILLED_MAILS
        finally:
            smtp.stop()
            for serve in serves:
                serve.stop()
