"""An agent's change that could not be pushed to Asterisk is pushed on the next connect,
even when the store was down the first time that was tried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cti.queue import service
from cti.store.models import AgentState
from dialplan.config import Config
from tests.support.memory_services import memory_services

CONFIG = Config.model_validate(
    {"kcc": {"agents": ["2001"], "mode": "queue"}, "phones": [{"extension": "2001"}]}
)


class Ami:
    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    async def action(self, action: dict[str, str], **_: Any) -> dict[str, str]:
        self.actions.append(action)
        return {"Response": "Success"}


class StoreDown:
    def __call__(self) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection refused"))


async def test_a_member_not_pushed_is_pushed_once_the_store_is_back(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        async with services.sessions() as session:
            session.add(AgentState(extension="2001", signed_in=True, paused=False))
            await session.commit()
        ami = Ami()
        services.ami = ami  # type: ignore[assignment]
        service._unpushed[id(ami)] = {"2001"}
        sessions, services.sessions = services.sessions, StoreDown()  # type: ignore[assignment]
        with pytest.raises(OperationalError):
            await service.push_unpushed(services)
        assert service._unpushed[id(ami)] == {"2001"}  # kept for the duty's retry
        services.sessions = sessions
        await service.push_unpushed(services)
        added = [a for a in ami.actions if a["Action"] == "QueueAdd"]
        assert [(a["Interface"], a["Paused"]) for a in added] == [("PJSIP/2001", "false")]
        assert not service._unpushed[id(ami)]
