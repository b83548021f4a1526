"""Transferring a call in progress to a team number: the one way, for every screen and API.

The citizen's channel is found among the live channels by the call's uniqueid. When it is
bridged to someone (an agent), that person's channel blind-transfers, so Asterisk sets
BLINDTRANSFER on the citizen's channel and hangs up the agent's, exactly as a REFER from
the phone does; not bridged yet (still in the menu or ringing the KCC), the citizen's
channel is redirected. Either way the call enters `bereik-team` at the team number: the
same team logic (presence, strategy, hopper on no answer) as any call to that team.

The audit row is written after Asterisk accepted the action, never before: the log lists
transfers that happened.
"""

from __future__ import annotations

from sqlalchemy import select

from cti.ami.client import AmiActionFailed, AmiError, AmiNotConnected, AmiTimeout
from cti.audit import audit
from cti.errors import DomainError
from cti.services import Services
from cti.store.models import Call
from dialplan.config import Team

TIMEOUT = 5.0


class TransferError(DomainError):
    """A transfer that cannot be made; raised with the status the API answers."""


async def transfer_to_team(
    services: Services, uniqueid: str, team: Team, *, actor: str, agent: str
) -> None:
    """Send the call whose citizen channel has `uniqueid` to `team`; raises TransferError."""
    ami = services.ami
    if ami is None or not ami.connected:
        raise TransferError("the exchange is not reachable (AMI down); transfer by phone", 503)
    try:
        channels = await ami.action_list({"Action": "CoreShowChannels"}, timeout=TIMEOUT)
        live = [c for c in channels if c.get("Event") == "CoreShowChannel"]
        citizen = next((c for c in live if c.get("Uniqueid") == uniqueid), None)
        if citizen is None:
            raise TransferError("this call has ended", 409)
        await ami.action(
            {
                "Action": "Setvar",
                "Channel": citizen["Channel"],
                "Variable": "BEREIK_TRANSFER_AGENT",
                "Value": agent,
            },
            timeout=TIMEOUT,
        )
        bridge = citizen.get("BridgeId", "")
        peer = next(
            (c for c in live if bridge and c.get("BridgeId") == bridge and c is not citizen), None
        )
        if peer is not None:
            await ami.action(
                {
                    "Action": "BlindTransfer",
                    "Channel": peer["Channel"],
                    "Context": "bereik-team",
                    "Exten": team.number,
                },
                timeout=TIMEOUT,
            )
        else:
            await ami.action(
                {
                    "Action": "Redirect",
                    "Channel": citizen["Channel"],
                    "Context": "bereik-team",
                    "Exten": team.number,
                    "Priority": "1",
                },
                timeout=TIMEOUT,
            )
    except AmiNotConnected:
        raise TransferError("the exchange is not reachable (AMI); transfer by phone", 503) from None
    except AmiTimeout:
        raise TransferError("the exchange did not answer in time; check the call", 504) from None
    except AmiActionFailed as exc:
        raise TransferError(f"the exchange refused the transfer: {exc}", 409) from None
    except AmiError as exc:
        raise TransferError(f"transfer failed: {exc}", 502) from None
    async with services.sessions() as session:
        row = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        if row is not None and agent and not row.agent:
            row.agent = agent[:32]
        audit(
            session,
            actor=actor,
            action="transfer",
            object_type="call",
            object_id=uniqueid,
            detail=f"to team {team.id} ({team.number})",
        )
        await session.commit()
