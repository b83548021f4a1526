"""Quality recordings with several nodes: the agent's stop goes to the node that carries the
caller's channel (cti/ami/nodes.py `carrying`, as coaching's spy), and every node records
into the one shared recordings folder, so the row's path serves, purges and erases the file
wherever the call was."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from panoramisk.message import Message

from cti.ami.client import AmiActionFailed, AmiClient
from cti.ami.nodes import AmiNodes
from cti.store.models import QuestionRecording
from cti.voice import quality
from dialplan.config import Config
from tests.support.memory_services import memory_services

CONFIG = Config.model_validate(
    {
        "asterisk": {"instance_dir": "/var/lib/bereik/shared"},
        "nodes": [
            {"name": "a", "sip_port": 5160, "ami_port": 5039, "instance_dir": "/var/lib/n-a"},
            {"name": "b", "sip_port": 5260, "ami_port": 5040, "instance_dir": "/var/lib/n-b"},
        ],
        "kcc": {"agents": ["2001"], "quality_share": 1.0},
        "phones": [{"extension": "2001"}],
    }
)


class Node:
    """One node's AMI connection: its live channels (Uniqueid -> channel), the actions it
    was sent; like Asterisk, it refuses StopMixMonitor on a channel it does not have."""

    def __init__(self, name: str, channels: dict[str, str], connected: bool = True) -> None:
        self.node = name
        self.connected = connected
        self.channels = channels
        self.sent: list[dict[str, str]] = []
        self.listed = 0
        self.events: Any = None
        self.on_connected: list[Any] = []
        self.on_state: list[Any] = []
        self.on_dropped: list[Any] = []
        self.on_skipped: list[Any] = []

    async def action(self, action: dict[str, str], timeout: float | None = None) -> Message:
        self.sent.append(action)
        if action["Channel"] not in self.channels.values():
            raise AmiActionFailed(Message({"Response": "Error", "Message": "No such channel"}))
        return Message({"Response": "Success"})

    async def action_list(
        self, action: dict[str, str], timeout: float | None = None
    ) -> list[Message]:
        self.listed += 1
        return [
            Message({"Event": "CoreShowChannel", "Channel": channel, "Uniqueid": uniqueid})
            for uniqueid, channel in self.channels.items()
        ]


def two_nodes(a: Node, b: Node) -> AmiNodes:
    return AmiNodes(cast(dict[str, AmiClient], {"a": a, "b": b}))


async def recorded(services: Any, uniqueid: str) -> None:
    async with services.sessions() as session, session.begin():
        session.add(
            QuestionRecording(
                call_uniqueid=uniqueid, path="/x.wav", seconds=0, kind="quality", team_id="kcc"
            )
        )


async def test_the_stop_goes_only_to_the_node_that_carries_the_callers_channel(
    tmp_path: Path,
) -> None:
    a = Node("a", {"a-1700.1": "PJSIP/trunk-00000001"})
    b = Node("b", {"b-1700.4": "PJSIP/trunk-00000004", "b-1700.5": "PJSIP/2001-00000005"})
    async with memory_services(CONFIG, tmp_path) as services:
        services.ami = two_nodes(a, b)
        await recorded(services, "b-1700.4")
        assert await quality.stop(services, "b-1700.4") is True
    assert (a.listed, a.sent) == (0, [])
    assert b.sent == [{"Action": "StopMixMonitor", "Channel": "PJSIP/trunk-00000004"}]


async def test_a_stop_while_the_carrying_nodes_ami_is_down_is_503_and_asks_no_other_node(
    tmp_path: Path,
) -> None:
    a = Node("a", {"a-1700.1": "PJSIP/trunk-00000001"})
    b = Node("b", {"b-1700.4": "PJSIP/trunk-00000004"})
    async with memory_services(CONFIG, tmp_path) as services:
        services.ami = two_nodes(a, b)
        await recorded(services, "b-1700.4")
        b.connected = False
        # Not "the call has ended": B may well carry it still; the exchange cannot be asked.
        with pytest.raises(quality.StopError) as down:
            await quality.stop(services, "b-1700.4")
        assert down.value.status == 503
        b.connected = True
        b.channels.clear()  # B is back and the call is over
        with pytest.raises(quality.StopError) as ended:
            await quality.stop(services, "b-1700.4")
        assert ended.value.status == 409
    assert (a.listed, a.sent, b.sent) == (0, [], [])


async def test_a_call_without_a_recording_is_not_stopped_and_one_already_stopped_says_so(
    tmp_path: Path,
) -> None:
    a = Node("a", {"a-1700.1": "PJSIP/trunk-00000001"})
    b = Node("b", {"b-1700.4": "PJSIP/trunk-00000004"})
    async with memory_services(CONFIG, tmp_path) as services:
        services.ami = two_nodes(a, b)
        assert await quality.stop(services, "a-1700.1") is False  # never recorded
        assert a.sent == [] and b.sent == []
        await recorded(services, "a-1700.1")

        async def refuse(action: dict[str, str], timeout: float | None = None) -> Message:
            a.sent.append(action)  # Asterisk: no MixMonitor on this channel
            raise AmiActionFailed(Message({"Response": "Error", "Message": "Not found"}))

        a.action = refuse  # type: ignore[method-assign]
        assert await quality.stop(services, "a-1700.1") is False
    assert [action["Channel"] for action in a.sent] == ["PJSIP/trunk-00000001"]
    assert b.sent == []


async def test_every_node_records_into_the_one_shared_recordings_folder(tmp_path: Path) -> None:
    async with memory_services(CONFIG, tmp_path) as services:
        path = await quality.prepare(services, "b-1700.4", "kcc")
        # What MixMonitor is given, on whichever node: a full path in [asterisk]
        # instance_dir (shared by the nodes), not in a node's own directory.
        named = services.asterisk_path(path)
        assert named == f"/var/lib/bereik/shared/recordings/{path.name}"
        for node in CONFIG.nodes:
            assert not named.startswith(node.instance_dir)
        assert path.parent == tmp_path / "recordings"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
