"""The 14070 entry: records the call and chooses its route."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from agi.server import AgiChannel
from bereik.services import Services
from cti.store.models import Call


async def ivr(channel: AgiChannel, services: Services) -> None:
    await record_call(channel, services, entry=services.config.exchange.main_number)
    await channel.set_variable("BEREIK_ROUTE", "kcc")
    await channel.finish()


async def record_call(channel: AgiChannel, services: Services, entry: str) -> None:
    """One row per call, keyed by its uniqueid; a repeated AGI on the same call is harmless."""
    env = channel.env
    async with services.sessions() as session:
        session.add(
            Call(
                uniqueid=env.uniqueid,
                linkedid=env.get("linkedid") or env.uniqueid,
                entry=entry,
                caller=env.get("callerid")[:80],
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
