"""The call tracker: AMI events in, one outcome per call out. Pure state, no I/O.

Asterisk describes a call as channels (one per leg), each with a ``Uniqueid``, tied
together by a ``Linkedid``: the uniqueid of the oldest channel of the call. We follow
channels by ``Uniqueid`` and calls by their first channel, and keep an index from
``Linkedid`` to call because the linkedid can change mid-call: when channels of two calls
meet in a bridge (an attended transfer) all take the oldest linkedid, and the younger call
is then merged into the older one.

A call ends on CEL ``LINKEDID_END`` (all its legs are gone). That event can arrive before
the last ``Hangup`` of the call, so the end does not wait for hangups; a ``Hangup`` of the
first channel with no other channel left ends the call too (when CEL is not configured).

Where the call waits for whom ("offers"): a ``UserEvent(BereikRoute)`` with ``Team:`` from
the dialplan, and every ``DialBegin`` from a channel in a team context (``bereik-kcc``,
``bereik-team``/``bereik-team-static``/``bereik-team-line`` with the team number as extension, or a
``BEREIK_TEAM`` channel variable). An offer is answered by ``DialEnd`` with
``DialStatus: ANSWER``; a ringall sends ``CANCEL`` to the other phones, so ``CANCEL`` alone
never means the caller gave up: that is decided when the call ends with the offer still
unanswered.

Times come from the events' ``Timestamp`` header (manager.conf ``timestampevents``), so a
recorded stream replays to the same waits, and fall back to the clock.

The tracker emits effects (``Started``, ``Answered``, ``Ended``); the listener persists them
and counts metrics only when the database row shows the effect was not applied before, so a
call is counted once even across an AMI reconnect or a restart of ``bereik serve``. It also
emits ``AgentLeg`` for each phone of ours that rings, answers or drops out of a followed
call: the KCC screen's live call (cti/calls/live.py) is fed from these, not from raw events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cti.ami.channels import extension_of, is_vhold_placeholder

KCC = "kcc"

# Where a call enters, by the context of its first channel (pjsip.conf endpoints).
TRUNK_CONTEXT = "from-trunk"
# Our phones; from-internal-tls is the way in of phones on TLS (dialplan/tls.conf.j2).
INTERNAL_CONTEXTS = ("from-internal", "from-internal-tls")
KCC_CONTEXT = "bereik-kcc"
TEAM_CONTEXTS = ("bereik-team", "bereik-team-static", "bereik-team-line")

# DialEnd statuses that end an offer with a transfer result other than "answered".
DIAL_RESULTS = {
    "NOANSWER": "no_answer",
    "CANCEL": "no_answer",
    "BUSY": "busy",
    "CONGESTION": "failed",
    "CHANUNAVAIL": "failed",
    "DONTCALL": "failed",
    "TORTURE": "failed",
    "INVALIDARGS": "failed",
}


@dataclass
class Offer:
    """The call ringing (or queued) for one team."""

    team: str
    since: float
    transfer: bool = False
    dests: set[str] = field(default_factory=set)
    answered_at: float | None = None
    agent: str = ""
    result: str = ""  # transfer result once known: answered no_answer busy failed
    how: str = ""  # for the journey: "" (the menu or the number dialled), blind, attended


@dataclass
class CallState:
    uniqueid: str  # of the first channel: the key of the calls row
    linkedid: str
    entry: str  # the number dialled
    entry_kind: str  # 14070, team, internal (the bereik_calls_offered_total label)
    caller: str
    started: float
    channels: set[str] = field(default_factory=set)
    all_channels: set[str] = field(default_factory=set)
    offers: list[Offer] = field(default_factory=list)
    pending_transfer: str = ""  # team a blind transfer went to, until its offer starts
    pending_at: float = 0.0  # when that blind transfer was made
    answered: bool = False
    resynced: bool = False
    route: str = ""  # the IVR's decision (UserEvent BereikIvrRoute): kcc, team-7001, closed...
    # What the caller heard to the end or cut short (UserEvent BereikPlayed): announcements
    # ("announcement:<id>") and channel-steering texts ("info:<key>"), in order.
    heard: list[str] = field(default_factory=list)
    routed_at: float = 0.0
    heard_at: list[float] = field(default_factory=list)  # when each of `heard` was heard
    # Phones of ours rung for this call, in order: [extension, rung at, answered at or None].
    rung: list[list[Any]] = field(default_factory=list)

    def open_offer(self) -> Offer | None:
        for offer in reversed(self.offers):
            if offer.answered_at is None and not offer.result:
                return offer
        return None


@dataclass(frozen=True)
class Started:
    uniqueid: str
    linkedid: str
    entry: str
    caller: str
    at: float


@dataclass(frozen=True)
class Answered:
    """The first answer of a call by a person: counted in bereik_calls_answered_total."""

    uniqueid: str
    team: str
    agent: str
    wait_seconds: float | None


@dataclass(frozen=True)
class Ended:
    uniqueid: str
    uniqueids: tuple[str, ...]  # every channel of the call: a hopper may name any of them
    entry_kind: str
    # answered_kcc answered_team transferred abandoned interrupted (hopper/closed/info: DB)
    outcome: str
    team: str
    agent: str
    wait_seconds: float | None
    at: float
    transfers: tuple[tuple[str, str], ...]  # (to_team, result)
    route: str = ""  # where the IVR sent the call (its last BereikIvrRoute), "" if nowhere
    heard: tuple[str, ...] = ()  # announcements and info texts heard (CallState.heard)
    # The journey as the tracker saw it (calls.steps, cti/journey): menu, offers, phones.
    steps: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Routed:
    """The IVR's decision for a call (kcc, team-7001, closed, info): calls.route."""

    uniqueid: str
    route: str


@dataclass(frozen=True)
class AgentLeg:
    """A phone's part in a call, for the KCC screen: it rings, is answered, or is over."""

    extension: str
    channel: str  # the phone's channel (PJSIP/2001-...)
    call: str  # the call's uniqueid: its calls row
    caller: str
    caller_name: str
    state: str  # ringing answered ended
    at: float
    caller_channel: str = ""  # the calling side's channel (a virtual-hold placeholder's Local/...)


Effect = Started | Answered | Routed | Ended | AgentLeg


class CallTracker:
    def __init__(
        self,
        main_number: str,
        kcc_number: str,
        team_numbers: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        main_aliases: Iterable[str] = (),
    ) -> None:
        self.main_number = main_number
        # The main number as a provider delivers it ([trunk] dids): the same 14070 call.
        self.main_aliases = frozenset(main_aliases)
        self.kcc_number = kcc_number
        self.team_numbers = dict(team_numbers)  # number -> team id
        self.teams = set(team_numbers.values()) | {KCC}
        self.clock = clock
        self.calls: dict[str, CallState] = {}  # by first uniqueid
        self.by_linkedid: dict[str, CallState] = {}
        self.by_channel: dict[str, CallState] = {}  # uniqueid of any leg -> call
        self.events = 0
        # Calls ringing a team now (call uniqueid -> team), and their count per team, kept
        # per event so the waiting gauge costs nothing per event however many calls are in
        # progress; `waiting_version` moves when a count does (the listener's cue).
        self._ringing: dict[str, str] = {}
        self._waiting = dict.fromkeys(self.teams, 0)
        self.waiting_version = 0
        # The handler of each event name (the `_on_<Event>` methods), looked up once.
        self._handlers: dict[str, Callable[[Mapping[str, Any], float, list[Effect]], None]] = {
            name: getattr(self, f"_on_{name}") for name in TRACKED_EVENTS
        }
        # Phones ringing or talking in a followed call (channel name -> its leg).
        self.legs: dict[str, AgentLeg] = {}

    # -- figures for gauges --------------------------------------------------------------

    def waiting(self) -> dict[str, int]:
        """Callers waiting right now per team: an offer started and not yet answered."""
        return dict(self._waiting)

    def _refresh(self, call: CallState | None) -> None:
        if call is None:
            return
        offer = call.open_offer() if call.uniqueid in self.calls else None
        self._ring(call.uniqueid, offer.team if offer is not None else "")

    def _ring(self, uniqueid: str, team: str) -> None:
        """Call `uniqueid` rings `team` now ("" or a team we do not know: it rings none)."""
        if team not in self.teams:
            team = ""
        before = self._ringing.get(uniqueid, "")
        if before == team:
            return
        if before:
            self._waiting[before] -= 1
        if team:
            self._ringing[uniqueid] = team
            self._waiting[team] += 1
        else:
            del self._ringing[uniqueid]
        self.waiting_version += 1

    # -- events ----------------------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> list[Effect]:
        self.events += 1
        name = event.get("Event", "")
        handler = self._handlers.get(name) if isinstance(name, str) else None
        if handler is None:
            return []
        at = _timestamp(event, self.clock)
        effects: list[Effect] = []
        # Read once for the re-keying before and the waiting count after the handler.
        uniqueid, linkedid = str(event.get("Uniqueid", "")), str(event.get("Linkedid", ""))
        self._follow_linkedid(uniqueid, linkedid)
        handler(event, at, effects)
        self._refresh(self.by_channel.get(uniqueid) or self.by_linkedid.get(linkedid))
        return effects

    def resync(
        self, channels: Iterable[Mapping[str, Any]], node: str = "", restarted: bool = False
    ) -> list[Effect]:
        """After a (re)connect: the live channels (CoreShowChannel events) are the truth.

        Calls we followed whose channels are all gone ended while we were not listening
        (Asterisk restarted, or the connection dropped): they end now with what we knew,
        or as "interrupted" when Asterisk `restarted` (it died under them: not the
        caller's doing, so not abandoned). Live channels we do not know are taken up;
        their past is unknown, so a call found in a bridge counts as answered with an
        unknown wait. With several nodes, `node` (its systemname, the prefix of its
        Uniqueids) limits all this to that node's calls.
        """
        now = self.clock()
        effects: list[Effect] = []
        live = {str(c.get("Uniqueid", "")): c for c in channels}
        mine = f"{node}-" if node else ""
        for call in list(self.calls.values()):
            if not call.uniqueid.startswith(mine):
                continue
            call.channels &= set(live)
            if not call.channels:
                ended: list[Effect] = []
                self._end(call, now, ended)
                effects += [
                    replace(e, outcome="interrupted") if restarted and isinstance(e, Ended) else e
                    for e in ended
                ]
        for uniqueid, channel in sorted(live.items()):
            known = self.by_channel.get(uniqueid)
            if known is not None:
                # A leg we followed may have been answered while we were not listening (the
                # connection cut between the ringing and the bridge): the bridge says so.
                call = known
            else:
                linkedid = str(channel.get("Linkedid") or uniqueid)
                found = self.by_linkedid.get(linkedid)
                if found is not None:
                    call = found
                else:
                    if uniqueid != linkedid:
                        continue  # a leg of a call whose first channel we have not seen yet
                    started = now - _duration(str(channel.get("Duration", "")))
                    entry, kind = self._entry_from_context(channel)
                    if not kind:
                        continue
                    call = self._new_call(uniqueid, linkedid, entry, kind, channel, started)
                    call.resynced = True
                    effects.append(Started(uniqueid, linkedid, entry, call.caller, started))
                self._add_channel(call, uniqueid)
                team = self._team_of(channel)
                if team and not call.offers:
                    call.offers.append(Offer(team=team, since=call.started))
            if channel.get("BridgeId") and uniqueid != call.uniqueid and call.offers:
                offer = call.offers[-1]
                if offer.answered_at is None:
                    offer.answered_at = now
                    offer.agent = extension_of(str(channel.get("Channel", "")))
                    call.answered = True
                    effects.append(Answered(call.uniqueid, offer.team, offer.agent, None))
        names = {str(c.get("Channel", "")) for c in channels}
        for name, leg in list(self.legs.items()):
            if name not in names and leg.call.startswith(mine):
                del self.legs[name]
                effects.append(replace(leg, state="ended", at=now))
        for call in self.calls.values():
            self._refresh(call)
        return effects

    # -- handlers, by event name -----------------------------------------------------------

    def _on_Newchannel(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        uniqueid, linkedid = str(e.get("Uniqueid", "")), str(e.get("Linkedid", ""))
        if not uniqueid or uniqueid in self.by_channel:
            return
        call = self.by_linkedid.get(linkedid) if linkedid else None
        if call is not None:
            self._add_channel(call, uniqueid)
            return
        if linkedid and linkedid != uniqueid:
            return  # a leg of a call we do not follow (an outgoing callback, say)
        entry, kind = self._entry(e)
        if not kind:
            return  # a call between two extensions, or an originated callback: no norm
        call = self._new_call(uniqueid, linkedid or uniqueid, entry, kind, e, at)
        out.append(Started(uniqueid, call.linkedid, entry, call.caller, at))

    def _on_UserEvent(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        if e.get("UserEvent") == "BereikIvrRoute":
            # The IVR handler's decision, sent through Asterisk so that the calls row has
            # one writer (the listener) and the decision arrives in order with the call.
            decided = self._call_of(e)
            if decided is not None:
                decided.route = str(e.get("Route", "")).strip()[:32]
                decided.routed_at = at
                out.append(Routed(decided.uniqueid, decided.route))
            return
        if e.get("UserEvent") == "BereikPlayed":
            self._played(e, at)
            return
        if e.get("UserEvent") == "BereikQueueExit":
            self._left_line(e)
            return
        if e.get("UserEvent") != "BereikRoute":
            return
        call = self._call_of(e)
        team = str(e.get("Team", ""))
        if call is None or team not in self.teams:
            return
        self._offer(call, team, at)

    def _left_line(self, e: Mapping[str, Any]) -> None:
        """The caller left a waiting line without an agent (nobody signed in, line full,
        max wait): nobody will answer this offer, the caller now hears the callback offer.
        Ending the offer here, as a ring group's last DialEnd does, keeps "waiting" one
        meaning everywhere: a caller whom a person may still answer."""
        call = self._call_of(e)
        offer = call.open_offer() if call is not None else None
        if offer is not None and offer.team == str(e.get("Queue", "")):
            offer.result = "no_answer"

    def _played(self, e: Mapping[str, Any], at: float = 0.0) -> None:
        """An announcement or an info text was heard: what an announcement saves is what
        the call did afterwards (cti/announcements/savings.py)."""
        call = self._call_of(e)
        what, ident = str(e.get("What", "")), str(e.get("Id", ""))
        if what == "announcement" and ident.isdigit():
            item = f"announcement:{ident}"
        elif what.startswith("info:") and len(what) <= 16:
            item = what
        else:
            return
        if call is not None and item not in call.heard and len(call.heard) < 20:
            call.heard.append(item)
            call.heard_at.append(at or call.started)

    def _on_DialBegin(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        call = self._call_of(e)
        if call is None:
            # A virtual-hold callback: the exchange originated its placeholder, so no call
            # came in; the agent's phone still rings for it (the popup says it is one).
            if is_vhold_placeholder(str(e.get("Channel", ""))):
                self._leg(e, str(e.get("Linkedid", "")), "ringing", at, out)
            return
        dest = str(e.get("DestUniqueid", ""))
        if dest:
            self._add_channel(call, dest)
        self._leg(e, call.uniqueid, "ringing", at, out)
        rung = extension_of(str(e.get("DestChannel", "")))
        if rung and len(call.rung) < MAX_RUNG:
            call.rung.append([rung, at, None])
        team = self._team_of(e)
        if not team:
            return
        offer = self._offer(call, team, at)
        offer.dests.add(dest)

    def _on_DialEnd(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        call = self._call_of(e)
        state = "answered" if e.get("DialStatus") == "ANSWER" else "ended"
        if call is None:
            if is_vhold_placeholder(str(e.get("Channel", ""))):
                self._leg(e, str(e.get("Linkedid", "")), state, at, out)
            return
        self._leg(e, call.uniqueid, state, at, out)
        dest = str(e.get("DestUniqueid", ""))
        offer = next((o for o in reversed(call.offers) if dest in o.dests), None)
        if offer is None or offer.answered_at is not None or offer.result:
            return
        status = str(e.get("DialStatus", ""))
        offer.dests.discard(dest)
        if status == "ANSWER":
            for leg in reversed(call.rung):
                if leg[0] == extension_of(str(e.get("DestChannel", ""))) and leg[2] is None:
                    leg[2] = at
                    break
            offer.answered_at = at
            offer.agent = extension_of(str(e.get("DestChannel", "")))
            offer.result = "answered"
            if not call.answered:
                call.answered = True
                out.append(
                    Answered(call.uniqueid, offer.team, offer.agent, max(at - offer.since, 0.0))
                )
        elif not offer.dests and status != "CANCEL":
            # Every phone of the team has given up: the offer is over (a ringall's
            # CANCELs to the other phones come after an ANSWER and are ignored above).
            offer.result = DIAL_RESULTS.get(status, "failed")

    def _on_BlindTransfer(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        if e.get("Result", "Success") != "Success":
            return
        uniqueid = str(e.get("TransfereeUniqueid", ""))
        call = self.by_channel.get(uniqueid)
        if call is None:
            return
        extension = str(e.get("Extension", ""))
        team = self.team_numbers.get(extension) or (KCC if extension == self.kcc_number else "")
        if team:
            call.pending_transfer = team
            call.pending_at = at

    def _on_AttendedTransfer(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        # The consultation call's channels take the transferee's linkedid (handled by
        # _follow_linkedid); what is left is crediting the answered target as a transfer.
        if e.get("Result", "Success") != "Success":
            return
        transferee = self.by_channel.get(str(e.get("TransfereeUniqueid", "")))
        target = self.by_channel.get(str(e.get("TransferTargetUniqueid", "")))
        if transferee is None or target is None or transferee is target:
            return
        for offer in target.offers:
            if offer.answered_at is not None:
                answered = Offer(
                    offer.team, offer.since, transfer=True, result="answered", how="attended"
                )
                answered.answered_at, answered.agent = offer.answered_at, offer.agent
                transferee.offers.append(answered)
        self._merge(target, into=transferee)

    def _on_Hangup(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        leg = self.legs.pop(str(e.get("Channel", "")), None)
        if leg is not None:
            out.append(replace(leg, state="ended", at=at))
        uniqueid = str(e.get("Uniqueid", ""))
        call = self.by_channel.pop(uniqueid, None)
        if call is None:
            return
        call.channels.discard(uniqueid)
        if not call.channels and call.uniqueid in self.calls:
            self._end(call, at, out)

    def _on_CEL(self, e: Mapping[str, Any], at: float, out: list[Effect]) -> None:
        if e.get("EventName") != "LINKEDID_END":
            return
        call = self.by_linkedid.get(str(e.get("LinkedID", "")))
        if call is not None:
            self._end(call, at, out)

    # -- the pieces --------------------------------------------------------------------------

    def _leg(
        self, e: Mapping[str, Any], call_id: str, state: str, at: float, out: list[Effect]
    ) -> None:
        """A phone of ours (DestChannel PJSIP/<extension>-...) rings, answers or gives up."""
        channel = str(e.get("DestChannel", ""))
        extension = extension_of(channel)
        if not extension:
            return
        known = self.legs.get(channel)
        if known is None:
            if state != "ringing":
                return
            leg = AgentLeg(
                extension=extension,
                channel=channel,
                call=call_id,
                caller=str(e.get("CallerIDNum", "")),
                caller_name=str(e.get("CallerIDName", "")),
                state=state,
                at=at,
                caller_channel=str(e.get("Channel", "")),
            )
        elif known.state == state:
            return
        else:
            leg = replace(known, state=state, at=at)
        if state == "ended":
            self.legs.pop(channel, None)
        else:
            self.legs[channel] = leg
        out.append(leg)

    def _new_call(
        self,
        uniqueid: str,
        linkedid: str,
        entry: str,
        kind: str,
        e: Mapping[str, Any],
        at: float,
    ) -> CallState:
        call = CallState(
            uniqueid=uniqueid,
            linkedid=linkedid,
            entry=entry,
            entry_kind=kind,
            caller=str(e.get("CallerIDNum", "") or "")[:80],
            started=at,
        )
        self.calls[uniqueid] = call
        self.by_linkedid[linkedid] = call
        self._add_channel(call, uniqueid)
        return call

    def _add_channel(self, call: CallState, uniqueid: str) -> None:
        call.channels.add(uniqueid)
        call.all_channels.add(uniqueid)
        self.by_channel[uniqueid] = call

    def _call_of(self, e: Mapping[str, Any]) -> CallState | None:
        return self.by_channel.get(str(e.get("Uniqueid", ""))) or self.by_linkedid.get(
            str(e.get("Linkedid", ""))
        )

    def _follow_linkedid(self, uniqueid: str, linkedid: str) -> None:
        """Re-key a channel whose Linkedid changed: it joined an older call."""
        if not uniqueid or not linkedid:
            return
        call = self.by_channel.get(uniqueid)
        if call is None or call.linkedid == linkedid:
            return
        older = self.by_linkedid.get(linkedid)
        if older is None:
            # The new linkedid is of a call we never followed: the call keeps its identity
            # but is found under the new key from now on.
            del self.by_linkedid[call.linkedid]
            call.linkedid = linkedid
            self.by_linkedid[linkedid] = call
            return
        if older is not call:
            self._merge(call, into=older)

    def _merge(self, young: CallState, into: CallState) -> None:
        """All channels of ``young`` now belong to ``into``; ``young`` is no call of its own.

        The younger call (a consultation call of an attended transfer) is not a citizen's
        call: it is dropped without an outcome, and its offers live on in the older call.
        """
        for uniqueid in young.channels:
            self._add_channel(into, uniqueid)
        into.all_channels |= young.all_channels
        self.calls.pop(young.uniqueid, None)
        self._ring(young.uniqueid, "")
        if self.by_linkedid.get(young.linkedid) is young:
            self.by_linkedid[young.linkedid] = into

    def _offer(self, call: CallState, team: str, at: float) -> Offer:
        current = call.open_offer()
        if current is not None and current.team == team:
            return current
        if current is not None and not current.result:
            current.result = "no_answer"  # moved on to another team without an answer
        blind = call.pending_transfer == team
        transfer = blind or (call.answered and team != KCC)
        call.pending_transfer = ""
        offer = Offer(team=team, since=at, transfer=transfer, how="blind" if blind else "")
        call.offers.append(offer)
        return offer

    def _end(self, call: CallState, at: float, out: list[Effect]) -> None:
        self.calls.pop(call.uniqueid, None)
        self._ring(call.uniqueid, "")
        for key, value in list(self.by_linkedid.items()):
            if value is call:
                del self.by_linkedid[key]
        for uniqueid in call.all_channels:
            if self.by_channel.get(uniqueid) is call:
                del self.by_channel[uniqueid]
        transfers = []
        for offer in call.offers:
            if offer.transfer:
                transfers.append((offer.team, offer.result or "no_answer"))
        if call.pending_transfer:
            # Transferred to a team whose handler dialled nobody (no one present).
            transfers.append((call.pending_transfer, "no_answer"))
        answered = [o for o in call.offers if o.answered_at is not None]
        team_answer = next((o for o in reversed(answered) if o.team != KCC), None)
        first_offer = call.offers[0] if call.offers else None
        wait: float | None = None
        if team_answer is not None:
            outcome, team, agent = "answered_team", team_answer.team, team_answer.agent
            wait = _wait(call, answered[0])
        elif answered:
            kcc = answered[0]
            last = call.offers[-1]
            if last.transfer and last.answered_at is None:
                outcome, team, agent = "transferred", last.team, kcc.agent
            elif call.pending_transfer:
                outcome, team, agent = "transferred", call.pending_transfer, kcc.agent
            else:
                outcome, team, agent = "answered_kcc", KCC, kcc.agent
            wait = _wait(call, kcc)
        elif first_offer is not None:
            last = call.offers[-1]
            outcome, team, agent = "abandoned", last.team, ""
            wait = max(at - first_offer.since, 0.0)
        else:
            outcome, team, agent = "abandoned", "", ""  # hung up in the menu
        out.append(
            Ended(
                uniqueid=call.uniqueid,
                uniqueids=tuple(sorted(call.all_channels)),
                entry_kind=call.entry_kind,
                outcome=outcome,
                team=team,
                agent=agent,
                wait_seconds=None if wait is None else round(wait, 3),
                at=at,
                transfers=tuple(transfers),
                route=call.route,
                heard=tuple(call.heard),
                steps=_steps(call),
            )
        )

    def _entry(self, e: Mapping[str, Any]) -> tuple[str, str]:
        """(number dialled, offered label) of a new first channel; kind "" = not followed."""
        context, exten = str(e.get("Context", "")), str(e.get("Exten", ""))
        if context == TRUNK_CONTEXT:
            if exten == self.main_number or exten in self.main_aliases:
                return self.main_number, "14070"
            if exten in self.team_numbers:
                return exten, "team"
            return exten, ""
        if context in INTERNAL_CONTEXTS and (
            exten in self.team_numbers or exten in (self.main_number, self.kcc_number)
        ):
            return exten, "internal"
        return exten, ""

    def _entry_from_context(self, channel: Mapping[str, Any]) -> tuple[str, str]:
        """For a channel found live at resync: where it is now tells roughly how it came."""
        context = str(channel.get("Context", ""))
        if context == TRUNK_CONTEXT or context in INTERNAL_CONTEXTS:
            return self._entry({"Context": context, "Exten": channel.get("Extension", "")})
        if context.startswith("bereik-"):
            team = self._team_of(channel)
            if team and team != KCC:
                number = next(n for n, t in self.team_numbers.items() if t == team)
                return number, "team"
            return self.main_number, "14070"
        return "", ""

    def _team_of(self, e: Mapping[str, Any]) -> str:
        """The team a channel is being offered to, from where it is in the dialplan."""
        variables = _chan_variables(e)
        team = variables.get("BEREIK_TEAM", "")
        if team in self.teams:
            return team
        context = str(e.get("Context", ""))
        if context == KCC_CONTEXT:
            return KCC
        if context in TEAM_CONTEXTS:
            exten = str(e.get("Exten", "") or e.get("Extension", ""))
            return self.team_numbers.get(exten, "")
        return ""


# The events the tracker reads: those it has a handler for (the listener subscribes to
# these; the AMI client need not build the others).
TRACKED_EVENTS = frozenset(
    name.removeprefix("_on_") for name in vars(CallTracker) if name.startswith("_on_")
)

MAX_RUNG = 50  # phones kept per call for its journey (a ring group rings a handful)


def _steps(call: CallState) -> tuple[dict[str, Any], ...]:
    """The journey of a call as the tracker saw it, in time order: the menu's decision,
    each offer to a team (how it came there, what became of it), each phone rung."""
    steps: list[dict[str, Any]] = []
    if call.route:
        steps.append({"at": call.routed_at or call.started, "kind": "menu", "route": call.route})
    for item, heard_at in zip(call.heard, call.heard_at, strict=False):
        steps.append({"at": heard_at, "kind": "heard", "item": item})
    for offer in call.offers:
        how = offer.how or ("transfer" if offer.transfer else "")
        result = offer.result or ("answered" if offer.answered_at is not None else "no_answer")
        steps.append(
            {
                "at": offer.since,
                "kind": "offered",
                "team": offer.team,
                "how": how,
                "result": result,
                "answered_at": offer.answered_at,
                "agent": offer.agent,
            }
        )
    if call.pending_transfer:
        # Transferred to a team whose handler rang nobody (nobody present).
        steps.append(
            {
                "at": call.pending_at or call.started,
                "kind": "offered",
                "team": call.pending_transfer,
                "how": "blind",
                "result": "no_answer",
                "answered_at": None,
                "agent": "",
            }
        )
    for extension, rung, answered in call.rung:
        steps.append({"at": rung, "kind": "rung", "extension": extension, "answered_at": answered})
    steps.sort(key=lambda step: float(step["at"]))
    return tuple(steps)


def _wait(call: CallState, offer: Offer) -> float | None:
    if call.resynced or offer.answered_at is None:
        return None
    first = call.offers[0].since
    return max(offer.answered_at - first, 0.0)


def _timestamp(e: Mapping[str, Any], clock: Callable[[], float]) -> float:
    return _float(e.get("Timestamp"), None) or clock()


def _float(value: Any, default: float | None) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _duration(text: str) -> float:
    """CoreShowChannel's Duration, HH:MM:SS, in seconds (0 when unreadable)."""
    seconds = 0.0
    for part in text.split(":"):
        number = _float(part, None)
        if number is None:
            return 0.0
        seconds = seconds * 60 + number
    return seconds


def _chan_variables(e: Mapping[str, Any]) -> dict[str, str]:
    raw = e.get("ChanVariable")
    if raw is None:
        return {}
    values = raw if isinstance(raw, list) else [raw]
    result = {}
    for value in values:
        key, _, val = str(value).partition("=")
        result[key] = val
    return result
