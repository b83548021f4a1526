"""The one configuration file (TOML), validated on load.

Every problem is reported as one line naming the file, the key and the problem, so an
operator editing the file at night can fix it without reading a traceback.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Digits only: an extension reaches AMI actions, pjsip.conf and the dialplan. Patterns are
# matched whole (pydantic's `pattern`, re.fullmatch): `re.match` with `$` would let a
# trailing newline through, and a newline in a rendered file adds a line of its own.
EXTENSION_PATTERN = r"[0-9]{2,8}"
Extension = Annotated[str, Field(pattern=rf"^{EXTENSION_PATTERN}$")]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(Exception):
    """A configuration problem, already phrased as the one line to show."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_control_characters(cls, value: object) -> object:
        """No value may carry a control character (CR, LF, TAB, NUL ...): every value ends
        up in a rendered Asterisk file, a mail header, an AMI action or a log line."""
        for text in _strings(value):
            if CONTROL.search(text):
                raise ValueError("must not contain control characters (newline, tab, ...)")
        return value


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# One address, nothing a mail header would read as a second one or a display name.
MAIL_ADDRESS = r"[^@\s<>,;\"]+@[^@\s<>,;\"]+"


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for pair in value.items() for item in pair for text in _strings(item)]
    return []


class Exchange(Strict):
    name: str = "Gemeente"
    main_number: Extension = "14070"
    timezone: str = "Europe/Amsterdam"
    language: Literal["nl", "en"] = "nl"
    website: str = "www.gemeente.nl"


class Server(Strict):
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=1, le=65535)
    agi_max_connections: int = Field(500, ge=1)
    agi_command_timeout: float = Field(10.0, gt=0)
    # Admission control (agi/admission.py): a call is taken only while the process keeps
    # each caller's first prompt within this bound; the rest take the dialplan's fallback.
    first_prompt_seconds: float = Field(1.0, gt=0, le=30)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    public_url: str = ""
    # Who may open a FastAGI session (Asterisk's address); others are closed at once.
    agi_allowed_peers: list[str] = ["127.0.0.1", "::1"]
    # A reverse proxy whose X-Forwarded-Proto/-For headers are believed; from any other
    # peer those headers are ignored (a client could otherwise claim https or an address).
    trusted_proxies: list[str] = []
    # Sign-in attempts per minute from one address (beyond: 429 and one audit row).
    login_attempts_per_minute: int = Field(10, ge=1, le=100_000)
    # The HTTP listener (cti/web/server.py): an idle kept-alive connection is closed after
    # http_keepalive_seconds; a connection that has not sent a complete request head
    # within http_header_seconds (of opening, or of a next request's first byte) too.
    http_keepalive_seconds: float = Field(15.0, gt=0, le=3600)
    http_header_seconds: float = Field(10.0, gt=0, le=300)
    # A stop first leaves the load balancer's rotation (GET /readyz answers 503, see
    # bereik/readiness.py): it waits until each balancer that checked it has had this many
    # 503s (HAProxy's `fall`), at most leave_rotation_seconds, then drains.
    readiness_fall: int = Field(2, ge=1, le=10)
    leave_rotation_seconds: float = Field(10.0, ge=0, le=120)
    # Less free space than this in the instance directory makes /healthz answer 503.
    disk_free_mb: int = Field(200, ge=0)

    @field_validator("agi_allowed_peers", "trusted_proxies")
    @classmethod
    def networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network") from None
        return values


def _absolute(value: str) -> str:
    """An instance directory: absolute, since Asterisk and Kamailio are started elsewhere."""
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return value


class Asterisk(Strict):
    sip_bind: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=1, le=65535)
    ami_port: int = Field(5038, ge=1, le=65535)
    ami_user: str = "bereik"
    # AMI events waiting for the subscribers; when full the oldest is dropped (and counted
    # on bereik_ami_events_dropped_total) rather than stall the socket reader.
    ami_event_queue: int = Field(10_000, ge=1)
    rtp_start: int = Field(10000, ge=1024, le=65000)
    rtp_end: int = Field(10999, ge=1024, le=65535)
    # Where this exchange's Asterisk keeps its files, as Asterisk sees it (inside its root
    # when it runs in the chroot that `bereik asterisk install` made).
    instance_dir: str = "/var/lib/bereik/asterisk"
    # Addresses whose calls count as the incoming trunk (anonymous calls only from these).
    trunk_addresses: list[str] = ["127.0.0.1"]
    # Where outgoing calls to citizens go (click-to-call), e.g. "sip:127.0.0.1:5090".
    trunk_contact: str = ""
    # host:port Asterisk connects to for FastAGI. Empty: this process's own
    # server.agi_host:agi_port. With several `bereik serve`, HAProxy's port in front of
    # them (deploy/haproxy/bereik-fastagi.cfg).
    fastagi: str = Field("", pattern=r"^$|^[A-Za-z0-9.\-]+:\d{1,5}$")
    # Asterisk's systemname: the prefix of every Uniqueid, so that the Uniqueids of two
    # nodes never collide. Set per node from [[nodes]] name; empty for a single Asterisk.
    systemname: str = Field("", pattern=r"^$|^[a-z][a-z0-9]{0,15}$")
    # A node's view (Config.node): the cluster's instance_dir, where the secrets (the same
    # on every node) and the sounds `bereik serve` writes live; empty for a single Asterisk.
    shared_dir: str = ""

    absolute = field_validator("instance_dir")(classmethod(lambda cls, value: _absolute(value)))


NodeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,15}$")]


class Node(Strict):
    """One Asterisk node behind Kamailio ([[nodes]]): the same rendered dialplan, its own
    ports, directory and systemname (its name), and its own AMI connection into Bereik."""

    name: NodeName
    host: str = "127.0.0.1"  # where Kamailio and bereik reach this node
    sip_port: int = Field(ge=1, le=65535)
    ami_port: int = Field(ge=1, le=65535)
    instance_dir: str
    # Each node its own RTP range when several share one machine (the demo, the tests).
    rtp_start: int = Field(0, ge=0, le=65000)
    rtp_end: int = Field(0, ge=0, le=65535)

    absolute = field_validator("instance_dir")(classmethod(lambda cls, value: _absolute(value)))

    @field_validator("host")
    @classmethod
    def host_name(cls, value: str) -> str:
        return _whole(_HOST_PORT, value, "must be a host name or address")


class Kamailio(Strict):
    """The SIP proxy in front of the nodes (deploy/kamailio/), used when [[nodes]] is set:
    the one SIP address the trunk and the phones see."""

    sip_bind: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=1, le=65535)
    # JSON-RPC over HTTP (dispatcher states for `bereik node`), on loopback only.
    rpc_port: int = Field(5071, ge=1, le=65535)
    instance_dir: str = "/var/lib/bereik/kamailio"
    # OPTIONS probe to every node this often; a node that does not answer one is taken out.
    probe_seconds: int = Field(1, ge=1, le=60)
    # A node that does not answer an INVITE (not even 100 Trying) within this long, or
    # answers 5xx, is skipped and the call goes to the next node.
    failover_ms: int = Field(1500, ge=200, le=30000)
    # In-dialog OPTIONS to both ends of every call (Kamailio's minimum is 30 s); a call
    # whose node is gone is ended towards the trunk 10 s after a keepalive fails.
    keepalive_seconds: int = Field(30, ge=30, le=3600)
    # The edge's bans (deploy/kamailio): a source (not a node, not the trunk) that sends
    # more than flood_requests requests in flood_seconds, or fails authentication
    # auth_failures times with auth_failure_seconds between failures, gets no answer at
    # all for ban_seconds.
    flood_requests: int = Field(30, ge=5, le=10_000)
    flood_seconds: int = Field(2, ge=1, le=60)
    auth_failures: int = Field(10, ge=2, le=1000)
    auth_failure_seconds: int = Field(300, ge=10, le=86_400)
    ban_seconds: int = Field(3600, ge=10, le=604_800)
    # SIP over TLS for phones, with [tls]'s certificate (SRTP keys travel inside it).
    tls_port: int = Field(5061, ge=1, le=65535)
    # The user Kamailio drops to when started as root.
    user: str = "nobody"
    group: str = "nogroup"

    absolute = field_validator("instance_dir")(classmethod(lambda cls, value: _absolute(value)))


class Database(Strict):
    url: str = "sqlite:////var/lib/bereik/bereik.db"

    @field_validator("url")
    @classmethod
    def known_backend(cls, url: str) -> str:
        if not re.match(r"(sqlite|postgresql)(\+\w+)?://", url):
            raise ValueError("must start with sqlite:// or postgresql://")
        return url


class Mail(Strict):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    sender: str = "bereik@localhost"
    # STARTTLS (cti/outbox.py): "auto" when the server offers it, "require" (certificate
    # verified, against ca_file if given, else the system's CAs) or "off".
    starttls: Literal["auto", "require", "off"] = "auto"
    ca_file: str = ""
    use_tls: bool = False  # older name: true is starttls = "require"
    username: str = ""
    password: str = ""
    retry_seconds: float = Field(30.0, gt=0)
    # An unsent mail older than this makes /healthz answer 503 (its `mail` part).
    late_seconds: float = Field(900.0, gt=0)

    @property
    def tls_mode(self) -> str:
        return "require" if self.use_tls else self.starttls

    @field_validator("ca_file")
    @classmethod
    def ca_path(cls, value: str) -> str:
        return _whole(_ABSOLUTE_PATH, value, "must be an absolute path without spaces or ';'")

    @field_validator("sender")
    @classmethod
    def sender_address(cls, value: str) -> str:
        if not re.fullmatch(MAIL_ADDRESS, value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value


# The KCC's id where a team id is expected (hoppers, metrics, reports): the first line.
KCC_ID = "kcc"
# Sales calls to employees (DOMAIN.md): not a citizen's question, so a question category
# whatever [categories] lists, never a hopper to call back and never in the service norm.
ACQUISITION = "acquisitie"


class Kcc(Strict):
    number: Extension = "7000"
    agents: list[Extension] = []
    ring_seconds: int = Field(30, ge=5, le=600)
    supervisor_mailbox: str = ""
    # "ringall": every agent's phone rings for ring_seconds, then the callback offer;
    # "queue": a waiting line (Asterisk app_queue), agents sign in and out ([queue]).
    mode: Literal["ringall", "queue"] = "ringall"
    # Share of the KCC's answered calls recorded for quality ([quality_recording]); 0: none.
    quality_share: float = Field(0.0, ge=0, le=1)


FeatureCode = Annotated[str, Field(pattern=r"^\*[0-9]{2,4}$")]


class Queue(Strict):
    """The KCC's waiting line (kcc.mode = "queue"); cti/queue/ holds what uses it."""

    # app_queue's strategies; "leastrecent" rings the agent idle the longest.
    strategy: Literal["leastrecent", "fewestcalls", "rrmemory", "linear", "ringall", "random"] = (
        "leastrecent"
    )
    # Seconds after each call in which the agent is not rung (nawerk); ended early by
    # the ready code or the screen.
    wrapup_seconds: int = Field(15, ge=0, le=600)
    # How long one agent's phone rings before the queue tries the next agent; an agent who
    # lets it ring out is paused (reason ring_out) until they say they are ready.
    agent_ring_seconds: int = Field(15, ge=3, le=120)
    # Strict order: a caller is handed to an agent only once everyone ahead of them was
    # answered (app_queue autofill = no), so callers are answered in the order they came
    # even when two agents come free in the same second. The price: while the first caller's
    # agent rings, nobody behind is rung (a ring-out holds the line up to agent_ring_seconds,
    # and pauses that agent). false: several callers ring free agents at once.
    strict_order: bool = True
    # The place in line is said on joining it and again every this many seconds (and when
    # it changed, not more often), by app_queue with Bereik's own voice (cti/queue/sounds.py).
    position_every_seconds: int = Field(30, ge=5, le=600)
    # Above this place the caller hears "more than N callers are waiting" instead of the
    # number (app_queue announce-position-limit); at most 20, the numbers Bereik's voice says.
    position_limit: int = Field(20, ge=1, le=20)
    # Overflow: the caller gets the callback offer after this long in line, when this
    # many already wait, when no agent is signed in, or when closing time comes.
    max_wait_seconds: int = Field(900, ge=10, le=7200)
    max_waiting: int = Field(0, ge=0, le=1000)  # 0: no limit
    # Service level: share answered within this many seconds; hang-ups before
    # short_abandon_seconds are counted apart (a wrong number, not a missed caller).
    service_level_seconds: int = Field(30, ge=1, le=600)
    # The target the staffing forecast (Erlang C) plans for: this share within the seconds.
    service_level_target: float = Field(0.8, gt=0, lt=1)
    short_abandon_seconds: int = Field(5, ge=0, le=60)
    # A caller who hung up in the KCC's line after short_abandon_seconds gets a KCC hopper
    # (reason abandoned), once per caller per day; never an acquisitie or anonymous caller.
    callback_abandoned: bool = False
    # Pause reasons: id -> label; the n-th is also pause code + n on the phone (*331).
    pause_reasons: dict[str, str] = {
        "lunch": "Lunch",
        "backoffice": "Backoffice",
        "overleg": "Overleg",
    }
    # Virtual hold: a caller in line may press 1 to be called back when their turn comes,
    # keeping their place; the citizen is rung this long, this many times, this far apart,
    # and when never reached the KCC gets a hopper.
    virtual_hold: bool = True
    callback_attempts: int = Field(2, ge=1, le=5)
    callback_retry_seconds: int = Field(120, ge=1, le=3600)
    callback_ring_seconds: int = Field(30, ge=5, le=120)
    sign_in_code: FeatureCode = "*31"
    sign_out_code: FeatureCode = "*32"
    pause_code: FeatureCode = "*33"
    ready_code: FeatureCode = "*34"

    @field_validator("pause_reasons")
    @classmethod
    def reason_ids(cls, reasons: dict[str, str]) -> dict[str, str]:
        if not 1 <= len(reasons) <= 9:
            raise ValueError("give 1 to 9 pause reasons (one key each after the pause code)")
        for reason in reasons:
            if not re.match(r"^[a-z][a-z0-9_]{0,31}$", reason) or reason == "ring_out":
                raise ValueError(f"{reason!r} is not a usable pause reason id")
        return reasons


class Norms(Strict):
    """First-line resolution (cti/reports/firstline.py): the share of KCC calls handled
    without a transfer or a hopper, against this target, and repeat callers: who called
    again within this many working days of an answered call."""

    first_line_target: float = Field(0.8, gt=0, le=1)
    repeat_days: int = Field(5, ge=1, le=30)


class Coaching(Strict):
    """Listening in on an agent's call (cti/coaching): whether the agent hears a short
    tone when a supervisor or team lead joins (works council agreements ask it)."""

    announce: bool = True


class Phone(Strict):
    """A SIP phone: a KCC agent's or a team member's desk phone."""

    extension: Extension
    name: str = ""
    # A fixed address for phones that do not register (test rigs, some desk phones).
    contact: str = ""
    # "tls": the phone signs in over SIP/TLS and every call to or from it uses SRTP (SDES);
    # a plain-RTP offer is refused. Needs [tls].
    transport: Literal["udp", "tls"] = "udp"


class Team(Strict):
    id: Identifier
    name: str
    number: Extension
    members: list[Extension] = []
    strategy: Literal["ringall", "linear"] = "ringall"
    ring_seconds: int = Field(20, ge=5, le=600)
    mailbox: str
    lead_mailbox: str = ""
    norm_working_days: int = Field(2, ge=1, le=20)
    # "ring": the present members' phones ring (strategy, ring_seconds), then the hopper
    # path; "queue": a waiting line like the KCC's (app_queue with the [queue] settings; the
    # members sign in and out with the agent feature codes), the hopper path on overflow.
    mode: Literal["ring", "queue"] = "ring"
    # A team line's own overflow limits; unset: [queue] max_wait_seconds and max_waiting.
    max_wait_seconds: int | None = Field(None, ge=10, le=7200)
    max_waiting: int | None = Field(None, ge=0, le=1000)
    # Share of the team's answered calls recorded for quality ([quality_recording]); 0: none.
    quality_share: float = Field(0.0, ge=0, le=1)

    @field_validator("mailbox", "lead_mailbox")
    @classmethod
    def address(cls, value: str, info: ValidationInfo) -> str:
        # Every hopper is mailed here: a typo would lose them silently until someone asks.
        if (value or info.field_name == "mailbox") and not re.fullmatch(MAIL_ADDRESS, value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("members")
    @classmethod
    def unique_members(cls, members: list[str]) -> list[str]:
        if len(set(members)) != len(members):
            raise ValueError("a member is listed twice")
        return members

    @model_validator(mode="after")
    def queue_settings(self) -> Team:
        # A limit on a ring group would be silently ignored: the caller would ring for
        # ring_seconds, not wait the minutes the operator meant.
        if self.mode != "queue":
            for key in ("max_wait_seconds", "max_waiting"):
                if getattr(self, key) is not None:
                    raise ValueError(f'team {self.id}: {key} needs mode = "queue"')
            return self
        if not self.members:
            raise ValueError(f'team {self.id}: mode = "queue" needs members to answer')
        if self.id == KCC_ID:
            raise ValueError(f"team id {KCC_ID} is the KCC's own line; choose another id")
        return self


@dataclass(frozen=True)
class WaitingLine:
    """One app_queue queue: the KCC's (kcc.mode = "queue") or a team's (mode = "queue").
    Everything that makes, fills or counts a queue goes through these (cti/queue/)."""

    name: str  # the queue's name in Asterisk and in the figures: "kcc" or the team id
    number: str  # the number callers dial; its hopper path on overflow
    members: tuple[str, ...]
    max_wait_seconds: int
    max_waiting: int
    team: bool  # a team's line: its own hopper; no virtual hold, no board row


class MenuOption(Strict):
    """One key of the 14070 menu; exactly one destination kind is filled in."""

    key: Annotated[str, Field(pattern=r"^[0-9*#]$")]
    label: str
    team: str = ""
    kcc: bool = False
    info: str = ""  # text spoken, then the caller may still choose the KCC
    submenu: list[MenuOption] = []
    prompt: str = ""  # for a submenu: what is said before its options

    @model_validator(mode="after")
    def one_destination(self) -> MenuOption:
        kinds = [bool(self.team), self.kcc, bool(self.info) and not self.team, bool(self.submenu)]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of team, kcc, info or submenu")
        return self


class Menu(Strict):
    greeting: str = "Welkom bij de gemeente."
    prompt: str = ""
    options: list[MenuOption] = []
    timeout_seconds: int = Field(5, ge=1, le=30)


class ClosedPeriod(Strict):
    date: date
    start: time | None = None
    end: time | None = None
    reason: str = ""


class Hours(Strict):
    """Opening hours per weekday ("08:30-17:00"; absent or "" means closed)."""

    mon: str = "08:30-17:00"
    tue: str = "08:30-17:00"
    wed: str = "08:30-17:00"
    thu: str = "08:30-17:00"
    fri: str = "08:30-17:00"
    sat: str = ""
    sun: str = ""
    # Names as the `holidays` package gives them (language en_US), e.g. "Good Friday".
    holidays_open: list[str] = []
    # Extra holidays closed every year although the package does not make them public
    # holidays in every year, e.g. "Liberation Day" (5 May); same names as holidays_open.
    holidays_closed: list[str] = []
    closed: list[ClosedPeriod] = []

    @field_validator(*WEEKDAYS)
    @classmethod
    def span(cls, value: str) -> str:
        if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError('must look like "08:30-17:00" or be ""')
        if value and value[:5] >= value[6:]:
            raise ValueError("closing time must be after opening time")
        return value


MIN_PIN_DIGITS = 6


class Operators(Strict):
    # Puts a message in front of every caller: at least MIN_PIN_DIGITS digits, and five
    # wrong PINs from one extension lock it (agi/handlers/operator.py).
    pin: str = ""
    record_code: Annotated[str, Field(pattern=r"^\*[0-9]{2,4}$")] = "*77"
    presence_on_code: Annotated[str, Field(pattern=r"^\*[0-9]{2,4}$")] = "*21"
    presence_off_code: Annotated[str, Field(pattern=r"^\*[0-9]{2,4}$")] = "*22"

    @field_validator("pin")
    @classmethod
    def digits(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9]+", value):
            raise ValueError("must be digits only")
        if value and len(value) < MIN_PIN_DIGITS:
            raise ValueError(f"must be at least {MIN_PIN_DIGITS} digits")
        if value and len(set(value)) == 1:
            raise ValueError("must not be one digit repeated")
        return value


# Numbers a callback may dial, as prefixes of the national form (+31/0031 become 0):
# Dutch landlines (01-05, 07), mobiles (061-065, 068), 085 and 088, free 0800. Not
# 0900/0906/0909 (paid), 084/087 (personal numbers, paid), 066/067, short numbers, or
# abroad: a caller who keys one would be called back at the municipality's cost. An
# entry starting with + allows that country (e.g. "+32" for Belgium).
DUTCH_PREFIXES = [
    "01", "02", "03", "04", "05", "07", "061", "062", "063", "064", "065", "068", "085",
    "088", "0800",
]  # fmt: skip


Prefix = Annotated[str, Field(pattern=r"^(0[1-9][0-9]{0,5}|\+[1-9][0-9]{0,6})$")]


class Callbacks(Strict):
    max_attempts: int = Field(3, ge=1, le=10)
    allowed_prefixes: list[Prefix] = DUTCH_PREFIXES
    reminder_hour: int = Field(8, ge=0, le=23)
    caller_id: str = ""  # shown to the citizen; defaults to the main number
    # Click-to-call: how long the member's own phone rings, then the citizen's.
    member_ring_seconds: int = Field(20, ge=5, le=120)
    ring_seconds: int = Field(30, ge=5, le=120)
    # How often the scheduler looks for due reminders and escalations (and stale attempts).
    check_seconds: float = Field(30.0, ge=0.5, le=3600)

    @field_validator("caller_id")
    @classmethod
    def caller_id_digits(cls, value: str) -> str:
        if value and not re.fullmatch(r"\+?[0-9]{2,20}", value):
            raise ValueError("must be a phone number (digits, optionally starting with +)")
        return value


class CallsOut(Strict):
    """Staff calling out from their own phones through the trunk (a leading 0, or 112);
    deploy/asterisk/dialplan/out.conf.j2."""

    # Presented to whom they call; empty: callbacks.caller_id, else the main number.
    caller_id: str = ""
    # National prefixes every phone may dial (as in [callbacks]; "+32" is 0032...).
    allowed_prefixes: list[Prefix] = DUTCH_PREFIXES
    # Costly prefixes (0900/0906/0909, 084/087, abroad: "+" for every country, or
    # "+32") and the phones that may dial each; every other phone hears why it may not.
    extra_prefixes: dict[str, list[Extension]] = {}

    @field_validator("caller_id")
    @classmethod
    def caller_id_digits(cls, value: str) -> str:
        if value and not re.fullmatch(r"\+?[0-9]{2,20}", value):
            raise ValueError("must be a phone number (digits, optionally starting with +)")
        return value

    @field_validator("extra_prefixes")
    @classmethod
    def prefixes(cls, extra: dict[str, list[str]]) -> dict[str, list[str]]:
        for prefix in extra:
            if not re.fullmatch(r"0[1-9][0-9]{0,5}|\+([1-9][0-9]{0,6})?", prefix):
                raise ValueError(f"{prefix!r} is not a prefix (0..., + or +<country>)")
        return extra


class Retention(Strict):
    closed_hopper_days: int = Field(90, ge=1)
    call_days: int = Field(90, ge=1)
    audit_days: int = Field(365, ge=1)
    # Sent mails (subjects and bodies carry callers' numbers and notes).
    sent_mail_days: int = Field(14, ge=1)
    # Callers' numbers in audit rows are masked after this many days; the row stays.
    audit_number_days: int = Field(30, ge=1)
    # Ended and expired announcements, with their audio (a recording by phone is a voice).
    announcement_days: int = Field(90, ge=1)
    # Quality recordings (a share of answered calls, with the caller's consent).
    quality_days: int = Field(30, ge=1)


# The speech engines cti/tts.py knows (its _ENGINES keys); named here so that a wrong name
# is a configuration error at load time, without the configuration importing the engines.
TTS_ENGINES = ("espeak", "espeak-ng")


class Tts(Strict):
    """The voice of every prompt and announcement (cti/tts.py)."""

    # "espeak" (espeak-ng, always there); another engine is added in cti/tts.py's _ENGINES
    # and in TTS_ENGINES, and chosen here by name.
    engine: str = "espeak"
    timeout_seconds: float = Field(20.0, gt=0, le=300)
    max_chars: int = Field(2000, ge=10, le=20000)
    speed: int | None = Field(None, ge=80, le=450)  # words per minute; None: the default

    @field_validator("engine")
    @classmethod
    def known_engine(cls, value: str) -> str:
        if (value or "espeak").strip().lower() not in TTS_ENGINES:
            known = ", ".join(sorted(TTS_ENGINES))
            raise ValueError(f"unknown TTS engine {value!r} (known: {known})")
        return value


# A value written into pjsip.conf: printable ASCII without spaces, and no ";" (a comment there).
_PJSIP_VALUE = re.compile(r"[!-:<-~]+")
_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_NUMBER = re.compile(r"\+?[0-9]{3,20}")
_ABSOLUTE_PATH = re.compile(r"/[!-:<-~]*")


def _whole(pattern: re.Pattern[str], value: str, problem: str) -> str:
    """The value if it is empty or matches the whole pattern (no trailing newline slips
    through, as it would with `$`), else the problem as a ValueError."""
    if value and not pattern.fullmatch(value):
        raise ValueError(problem)
    return value


class Tls(Strict):
    """Certificates for SIP over TLS (phones, the trunk) and for HTTPS of the screens and API.

    The files stay where they are named; `bereik asterisk render` copies them (0600) into
    the Asterisk instance, since a chrooted Asterisk cannot see the host's paths.
    `bereik tls selfsigned --config FILE` makes a pair for the demo.
    """

    cert_file: str = ""  # PEM certificate (chain) of this exchange
    key_file: str = ""  # its PEM private key
    ca_file: str = ""  # CA bundle that signed the trunk provider's certificate (verified)
    sip_port: int = Field(5061, ge=1, le=65535)
    https: bool = False  # `bereik serve` answers HTTPS instead of HTTP, with HSTS
    hsts_seconds: int = Field(31_536_000, ge=0)

    @field_validator("cert_file", "key_file", "ca_file")
    @classmethod
    def absolute_file(cls, value: str) -> str:
        return _whole(_ABSOLUTE_PATH, value, "must be an absolute path without spaces or ';'")

    @model_validator(mode="after")
    def pair(self) -> Tls:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("give both cert_file and key_file")
        if self.https and not self.cert_file:
            raise ValueError("https needs cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


class Trunk(Strict):
    """A provider trunk that wants registration with credentials (most deliver 14070 so).

    Without `server` the trunk is matched by address only (`asterisk.trunk_addresses`,
    `asterisk.trunk_contact`).
    """

    server: str = ""  # the provider's registrar and proxy: host or host:port
    username: str = ""
    password: str = ""
    transport: Literal["udp", "tls"] = "udp"
    from_domain: str = ""  # some providers want their own domain in From
    # The numbers the provider delivers for the main number, e.g. "+31701234567" (14070's
    # geographic number) or "14070". Each also matches in its other Dutch forms
    # (+31..., 0031..., 31..., 0...), so how the provider writes it does not matter.
    dids: list[str] = []
    # How numbers go to the provider, dialled and caller ID: "national" (0612345678),
    # "e164" (+31612345678) or "international" (0031612345678).
    number_format: Literal["national", "e164", "international"] = "national"
    country_code: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}$")] = "31"
    expiration_seconds: int = Field(300, ge=60, le=86400)
    # "sdes": SRTP with the provider (keys in the SDP, so only over TLS); never optimistic.
    media_encryption: Literal["none", "sdes"] = "none"

    @field_validator("server", "from_domain")
    @classmethod
    def host_name(cls, value: str) -> str:
        return _whole(_HOST_PORT, value, "must be a host name or address, optionally with :port")

    @field_validator("username", "password")
    @classmethod
    def pjsip_value(cls, value: str) -> str:
        return _whole(_PJSIP_VALUE, value, "only printable characters, no spaces or ';'")

    @field_validator("dids")
    @classmethod
    def numbers(cls, dids: list[str]) -> list[str]:
        for did in dids:
            _whole(_NUMBER, did, f"{did!r} is not a phone number (digits, optionally a leading +)")
        return dids

    @model_validator(mode="after")
    def credentials(self) -> Trunk:
        if self.server and not (self.username and self.password):
            raise ValueError("a trunk with a server needs username and password")
        if (self.username or self.password or self.dids) and not self.server:
            raise ValueError("username, password and dids need server")
        if self.media_encryption == "sdes" and not (self.server and self.transport == "tls"):
            raise ValueError("media_encryption = sdes needs a server and transport = tls")
        return self

    @property
    def registers(self) -> bool:
        return bool(self.server)

    @property
    def host(self) -> str:
        return self.server.split(":")[0]


class QuestionRecording(Strict):
    """The caller's question in their own words, after a confirmed callback (agi/handlers)."""

    enabled: bool = True
    max_seconds: int = Field(60, ge=5, le=300)
    silence_seconds: int = Field(3, ge=1, le=10)  # this much silence ends it, as # does
    prompt: str = (
        "Wilt u uw vraag inspreken? Dan weet het team waar het over gaat. "
        "Spreek na de toon, en toets hekje als u klaar bent. Of toets hekje om over te slaan."
    )
    # Said instead of the invitation while the disk is nearly full (server.disk_free_mb).
    no_room: str = "Inspreken kan op dit moment niet. Uw terugbelverzoek is wel genoteerd."


class QualityRecording(Strict):
    """Recording answered calls for quality (cti/voice/quality.py): who is recorded is
    `kcc.quality_share` / a team's `quality_share`; this is what such a caller hears."""

    # Said before the call is put through; the caller refuses with refuse_key.
    prompt: str = (
        "Dit gesprek kan worden opgenomen om onze dienstverlening te verbeteren. "
        "Wilt u dat niet? Toets dan 9."
    )
    refuse_key: Annotated[str, Field(pattern=r"^[0-9*]$")] = "9"
    # How long after the prompt a key still refuses.
    answer_seconds: int = Field(3, ge=1, le=10)
    refused: str = "Dit gesprek wordt niet opgenomen."


class SurveyQuestion(Strict):
    id: Identifier  # the label on /metrics and in the reports: keep it short and stable
    text: str
    kind: Literal["score", "yes_no"] = "score"
    # Keys 1..answers are an answer; "score" averages them, "yes_no" counts 1 as yes.
    answers: int = Field(5, ge=2, le=9)

    @model_validator(mode="after")
    def yes_no_has_two(self) -> SurveyQuestion:
        if self.kind == "yes_no" and self.answers != 2:
            raise ValueError("a yes_no question has answers = 2 (1 yes, 2 no)")
        return self


class Survey(Strict):
    """The post-call survey: asked when the KCC agent or team member hangs up first."""

    # Share of answered calls asked, per entry: "kcc" or a team id; absent = off.
    shares: dict[str, float] = {}
    intro: str = "Wilt u ons helpen met twee korte vragen over dit gesprek?"
    questions: list[SurveyQuestion] = [
        SurveyQuestion(
            id="tevredenheid",
            text="Hoe tevreden bent u over dit gesprek? Toets 1 tot en met 5; 5 is zeer tevreden.",
        ),
        SurveyQuestion(
            id="beantwoord",
            text="Is uw vraag beantwoord? Toets 1 voor ja, of 2 voor nee.",
            kind="yes_no",
            answers=2,
        ),
    ]
    thanks: str = "Dank u wel voor uw antwoord. Tot ziens."
    answer_seconds: int = Field(6, ge=2, le=30)
    # Per-agent figures only from this many answers on (privacy: no single answer traced).
    min_answers_per_agent: int = Field(5, ge=1, le=1000)

    @field_validator("shares")
    @classmethod
    def share_range(cls, shares: dict[str, float]) -> dict[str, float]:
        for entry, share in shares.items():
            if not 0 <= share <= 1:
                raise ValueError(f"share for {entry} must be between 0 and 1")
        return shares

    @field_validator("questions")
    @classmethod
    def one_or_two(cls, questions: list[SurveyQuestion]) -> list[SurveyQuestion]:
        if not 1 <= len(questions) <= 2 or len({q.id for q in questions}) != len(questions):
            raise ValueError("give one or two questions, each with its own id")
        return questions


class Config(Strict):
    exchange: Exchange = Exchange()
    server: Server = Server()
    asterisk: Asterisk = Asterisk()
    database: Database = Database()
    mail: Mail = Mail()
    kcc: Kcc = Kcc()
    queue: Queue = Queue()
    norms: Norms = Norms()
    coaching: Coaching = Coaching()
    phones: list[Phone] = []
    teams: list[Team] = []
    menu: Menu = Menu()
    hours: Hours = Hours()
    operators: Operators = Operators()
    callbacks: Callbacks = Callbacks()
    calls_out: CallsOut = CallsOut()
    retention: Retention = Retention()
    tts: Tts = Tts()
    tls: Tls = Tls()
    trunk: Trunk = Trunk()
    question_recording: QuestionRecording = QuestionRecording()
    quality_recording: QualityRecording = QualityRecording()
    survey: Survey = Survey()
    categories: dict[str, str] = {}  # question category -> team id (the SOP routing table)
    # Several Asterisk nodes behind Kamailio; empty: one Asterisk as [asterisk] says.
    nodes: list[Node] = []
    kamailio: Kamailio = Kamailio()

    def known_categories(self) -> set[str]:
        """Every question category a call or hopper may get (lower case)."""
        return {name.lower() for name in self.categories} | {ACQUISITION}

    @model_validator(mode="after")
    def consistent(self) -> Config:
        numbers: dict[str, str] = {}

        def claim(number: str, owner: str) -> None:
            if number in numbers:
                raise ValueError(f"number {number} is used by both {numbers[number]} and {owner}")
            numbers[number] = owner

        claim(self.exchange.main_number, "exchange.main_number")
        claim(self.kcc.number, "kcc.number")
        for team in self.teams:
            claim(team.number, f"team {team.id}")
        for phone in self.phones:
            claim(phone.extension, f"phone {phone.extension}")
        team_ids = [team.id for team in self.teams]
        duplicates = {t for t in team_ids if team_ids.count(t) > 1}
        if duplicates:
            raise ValueError(f"team id {sorted(duplicates)[0]} appears twice")
        phones = {phone.extension for phone in self.phones}
        for team in self.teams:
            for member in team.members:
                if member not in phones:
                    raise ValueError(f"team {team.id} member {member} is not in [[phones]]")
        for agent in self.kcc.agents:
            if agent not in phones:
                raise ValueError(f"kcc agent {agent} is not in [[phones]]")
        for prefix, allowed in self.calls_out.extra_prefixes.items():
            for extension in allowed:
                if extension not in phones:
                    raise ValueError(f"calls_out prefix {prefix}: {extension} is not a phone")
        codes = [
            self.operators.record_code,
            self.operators.presence_on_code,
            self.operators.presence_off_code,
            self.queue.sign_in_code,
            self.queue.sign_out_code,
            self.queue.pause_code,
            self.queue.ready_code,
        ]
        for code in codes:
            if codes.count(code) > 1:
                raise ValueError(f"feature code {code} is used twice")
        for option in _walk(self.menu.options):
            if option.team and option.team not in team_ids:
                raise ValueError(f"menu key {option.key} names unknown team {option.team}")
        for entry in self.survey.shares:
            if entry != KCC_ID and entry not in team_ids:
                raise ValueError(f"survey.shares names unknown entry {entry} (kcc or a team id)")
        for category, team_id in self.categories.items():
            if team_id not in team_ids:
                raise ValueError(f"category {category} names unknown team {team_id}")
        return self

    @model_validator(mode="after")
    def encryption_available(self) -> Config:
        for phone in self.phones:
            if phone.transport == "tls" and not self.tls.enabled:
                raise ValueError(f"phone {phone.extension} uses tls but [tls] has no cert_file")
        if self.trunk.transport == "tls" and self.trunk.registers and not self.tls.enabled:
            raise ValueError("trunk transport tls needs [tls] cert_file and key_file")
        return self

    @model_validator(mode="after")
    def distinct_nodes(self) -> Config:
        for key in ("name", "instance_dir"):
            values = [getattr(node, key) for node in self.nodes]
            for value in values:
                if values.count(value) > 1:
                    raise ValueError(f"two nodes have {key} {value}")
        ports = [(node.host, node.sip_port) for node in self.nodes]
        if len(set(ports)) != len(ports):
            raise ValueError("two nodes have the same host and sip_port")
        return self

    def node(self, name: str) -> Config:
        """This configuration as node `name` sees it: [asterisk] with the node's ports,
        directory and systemname; everything else (dialplan, phones, teams) the same."""
        for node in self.nodes:
            if node.name == name:
                changes: dict[str, object] = {
                    "sip_port": node.sip_port,
                    "ami_port": node.ami_port,
                    "instance_dir": node.instance_dir,
                    "systemname": node.name,
                    "shared_dir": self.asterisk.instance_dir,
                }
                if node.rtp_start and node.rtp_end:
                    changes |= {"rtp_start": node.rtp_start, "rtp_end": node.rtp_end}
                return self.model_copy(
                    update={"asterisk": self.asterisk.model_copy(update=changes)}
                )
        known = ", ".join(node.name for node in self.nodes) or "none configured"
        raise ConfigError(f"no node {name!r} (nodes: {known})")

    @property
    def outbound_trunk(self) -> bool:
        """Whether calls to citizens can go out (a registered trunk or a fixed contact)."""
        return self.trunk.registers or bool(self.asterisk.trunk_contact)

    def team(self, team_id: str) -> Team:
        for team in self.teams:
            if team.id == team_id:
                return team
        raise KeyError(team_id)

    def quality_share(self, team_id: str) -> float:
        """The share of `team_id`'s ("kcc" or a team id) answered calls recorded."""
        if team_id == KCC_ID:
            return self.kcc.quality_share
        found = next((team for team in self.teams if team.id == team_id), None)
        return found.quality_share if found is not None else 0.0

    def team_by_number(self, number: str) -> Team | None:
        return next((team for team in self.teams if team.number == number), None)

    def waiting_lines(self) -> list[WaitingLine]:
        """Every waiting line: the KCC's first (when it is one), then the teams' in order."""
        lines = []
        if self.kcc.mode == "queue":
            lines.append(
                WaitingLine(
                    KCC_ID,
                    self.kcc.number,
                    tuple(self.kcc.agents),
                    self.queue.max_wait_seconds,
                    self.queue.max_waiting,
                    team=False,
                )
            )
        for team in self.teams:
            if team.mode == "queue":
                lines.append(
                    WaitingLine(
                        team.id,
                        team.number,
                        tuple(team.members),
                        team.max_wait_seconds or self.queue.max_wait_seconds,
                        self.queue.max_waiting if team.max_waiting is None else team.max_waiting,
                        team=True,
                    )
                )
        return lines

    def waiting_line(self, name: str) -> WaitingLine | None:
        return next((line for line in self.waiting_lines() if line.name == name), None)


def _walk(options: list[MenuOption]) -> list[MenuOption]:
    found: list[MenuOption] = []
    for option in options:
        found.append(option)
        found.extend(_walk(option.submenu))
    return found


def load(path: str | Path) -> Config:
    """Read and validate a configuration file, or raise ConfigError with one clear line."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib already rejects a key given twice in one table.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing field"
    return f"{key}: {message}"
