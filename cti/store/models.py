"""The tables: everything that must survive a restart lives here.

Portable SQL only (no SQLite-only types), so PostgreSQL can take over when several
machines share the work. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Call(Base):
    """One call as the exchange saw it, keyed by the Asterisk uniqueid of its first channel."""

    __tablename__ = "calls"
    # A number's calls, newest first: the popup's earlier contacts, first-line repeats
    # (migration 0016).
    __table_args__ = (Index("ix_calls_caller_started", "caller", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str] = mapped_column(String(64), default="", index=True)
    entry: Mapped[str] = mapped_column(String(32))  # the number dialled: 14070, a team number
    caller: Mapped[str] = mapped_column(String(80), default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # what the IVR decided: kcc, team:<id>, info, closed, hangup
    route: Mapped[str] = mapped_column(String(64), default="")
    # final outcome: answered_kcc, answered_team, transferred, hopper, abandoned, closed, info
    outcome: Mapped[str] = mapped_column(String(32), default="", index=True)
    team_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    answered_by: Mapped[str] = mapped_column(String(32), default="")
    wait_seconds: Mapped[float | None] = mapped_column(nullable=True)
    category: Mapped[str] = mapped_column(String(64), default="")
    agent: Mapped[str] = mapped_column(String(32), default="")
    # The tracker's view of the journey, written when the call ends (cti/journey): the
    # menu's decision, each team offered (and how: menu, blind or attended transfer) with
    # its result, each phone rung and when it answered. Migration 0014.
    steps: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


# Which hoppers the one-open-per-caller index covers: open ones that count (an acquisitie
# hopper is written open and closed in one transaction; it is never linked).
ONE_OPEN_HOPPER = "status = 'open' AND counts_for_norm"

# Ids that leave their row (a hopper's number in mails, links, outbox keys and the audit
# log; announcements and recordings in the audit log and URLs) are never given again after
# a purge. SQLite's plain rowid reuses the highest id once it is deleted; AUTOINCREMENT
# does not. PostgreSQL's sequences never reuse. (Migration 0009.)
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


class Hopper(Base):
    """A callback request: a citizen waiting for a team to call back."""

    __tablename__ = "hoppers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    caller: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(
        String(32)
    )  # no_answer busy nobody_present after_hours manual
    agent: Mapped[str] = mapped_column(String(32), default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    call_uniqueid: Mapped[str] = mapped_column(String(64), default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open, closed
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_by: Mapped[str] = mapped_column(String(64), default="")
    closing_reason: Mapped[str] = mapped_column(String(32), default="")
    # Decided once, when the hopper closes; None while open or when outside the norm's scope.
    within_norm: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    counts_for_norm: Mapped[bool] = mapped_column(Boolean, default=True)
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("hoppers.id"), nullable=True)
    repeat_count: Mapped[int] = mapped_column(Integer, default=0)

    events: Mapped[list[HopperEvent]] = relationship(
        back_populates="hopper", order_by="HopperEvent.id", cascade="all, delete-orphan"
    )
    attempts: Mapped[list[CallbackAttempt]] = relationship(
        back_populates="hopper", order_by="CallbackAttempt.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_hoppers_open_by_caller", "caller", "team_id", "status"),
        # One open hopper per caller and team: a repeat contact is linked, never a second
        # hopper, also when two processes take the two calls (cti/hoppers/service.py).
        Index(
            "uq_hoppers_one_open_per_caller",
            "caller",
            "team_id",
            unique=True,
            sqlite_where=text(ONE_OPEN_HOPPER),
            postgresql_where=text(ONE_OPEN_HOPPER),
        ),
        NEVER_REUSED_IDS,
    )


class HopperEvent(Base):
    """The history of a hopper: who held it when, and what was done."""

    __tablename__ = "hopper_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hopper_id: Mapped[int] = mapped_column(ForeignKey("hoppers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(
        String(32)
    )  # created reassigned claimed attempt closed repeat
    team_id: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The call that made (created) or repeated (repeat) the hopper, if a call did. The
    # server default is migration 0003's, which added the column to existing rows.
    call_uniqueid: Mapped[str] = mapped_column(
        String(64), default="", server_default="", index=True
    )

    hopper: Mapped[Hopper] = relationship(back_populates="events")


class CallbackAttempt(Base):
    __tablename__ = "callback_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hopper_id: Mapped[int] = mapped_column(ForeignKey("hoppers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    member: Mapped[str] = mapped_column(String(64))
    extension: Mapped[str] = mapped_column(String(32), default="")
    action_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    outcome: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending reached no_answer busy failed cancelled
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Why it ended: the citizen's DialStatus, or "member:<reason>" when the member's own
    # phone never got to dial out (that does not count as trying the citizen).
    detail: Mapped[str] = mapped_column(String(64), default="", server_default="")

    hopper: Mapped[Hopper] = relationship(back_populates="attempts")


class OutboxMail(Base):
    """A mail to send. The unique key makes "exactly once" hold across processes and restarts."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    recipient: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # A sender claims a row until this time, so two processes never send the same mail.
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Announcement(Base):
    __tablename__ = "announcements"
    __table_args__ = NEVER_REUSED_IDS
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # outage news closure
    scope: Mapped[str] = mapped_column(String(64), default="all")  # all, menu:<key>, team:<id>
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    author: Mapped[str] = mapped_column(String(64), default="")
    audio: Mapped[str] = mapped_column(String(255), default="")  # file name, without extension
    source: Mapped[str] = mapped_column(String(16), default="tts")  # tts, phone, upload
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Presence(Base):
    """Whether a member is there to take calls on the team number."""

    __tablename__ = "presence"
    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(64), default="")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # agent member lead operator supervisor admin
    team_id: Mapped[str] = mapped_column(String(32), default="")
    extension: Mapped[str] = mapped_column(String(32), default="")
    language: Mapped[str] = mapped_column(String(2), default="nl")
    api_token_hash: Mapped[str] = mapped_column(String(128), default="", index=True)
    api_token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Raised to end every session of this user (see cti.users.service.revoke_sessions).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # TOTP second factor (cti/users/second_factor.py): the secret encrypted with the
    # instance's key, when it was confirmed (None: not enrolled), the last time step used.
    totp_secret: Mapped[str] = mapped_column(String(255), default="", server_default="")
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RecoveryCode(Base):
    """A second-factor recovery code: only its SHA-256 is kept, and it works once."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class LoginFailure(Base):
    """Wrong sign-ins for one name from one address (cti/users/backoff.py): the wait
    grows per pair, so a guesser elsewhere never locks the account's owner out."""

    __tablename__ = "login_failures"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    blocked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AuditEntry(Base):
    """Who saw or changed what, when (BIO): one row per view and per change of personal data."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class JobRun(Base):
    """The last time a scheduled job (purge, weekly report) ran for a period: one row each."""

    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("job", "period"),)


class PinLock(Base):
    """Wrong recording PINs keyed from one extension, counted across calls (BIO)."""

    __tablename__ = "pin_locks"
    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AgentState(Base):
    """A KCC agent's place in a waiting line: the one truth Asterisk's queue is set from.

    ``signed_in`` and ``paused`` (with ``pause_reason``) are what the agent chose (feature
    code or screen); ``on_call_since`` and ``wrapup_until`` follow the queue's events. The
    state shown is derived from these (cti.queue.service.state_of).
    """

    __tablename__ = "agent_states"
    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    queue: Mapped[str] = mapped_column(String(32), default="kcc")
    signed_in: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str] = mapped_column(String(32), default="")
    on_call_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    wrapup_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Since when the agent has been free (for the board); set when a call or pause ends.
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(64), default="")


class QueueCall(Base):
    """One caller's stay in a waiting line, from joining to its outcome.

    outcome: answered, abandoned, overflow (max wait, full, nobody signed in, closing
    time: the callback offer followed), callback (virtual hold chosen); "" while waiting.
    """

    __tablename__ = "queue_calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue: Mapped[str] = mapped_column(String(32), index=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String(80), default="")
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # on entry, 1 = next
    left_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="", index=True)
    detail: Mapped[str] = mapped_column(String(32), default="")  # QUEUESTATUS of an overflow
    wait_seconds: Mapped[float | None] = mapped_column(nullable=True)
    agent: Mapped[str] = mapped_column(String(32), default="")
    # Seconds the agent talked (AgentComplete): the handling time the expected wait and the
    # staffing forecast are computed from.
    talk_seconds: Mapped[float | None] = mapped_column(nullable=True)


class VirtualHold(Base):
    """A caller who pressed 1 in line: called back when their turn comes, keeping their place.

    status: pending (waiting for its next try), queued (its placeholder is in the line),
    calling (an agent took it; the citizen rings), reached, failed (a KCC hopper was made).
    """

    __tablename__ = "virtual_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue: Mapped[str] = mapped_column(String(32), default="kcc")
    call_uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)  # QUEUE_PRIO of the original arrival
    arrived_at: Mapped[datetime] = mapped_column(UtcDateTime)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    agent: Mapped[str] = mapped_column(String(32), default="")
    reached_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    hopper_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TrackingLease(Base):
    """Who records the calls of one Asterisk (cti/calls/lease.py): one row per Asterisk.

    `fence` grows by one at every change of owner; the owner's every write checks it in
    the same transaction, so a process that lost the lease (paused, cut off) can never
    write after its successor started. `beat` grows while the owner lives: a standby that
    sees it stand still on its own clock takes over (no clocks compared between hosts).
    `written_through` is the Asterisk time of the owner's last stored event: how far back a
    standby must keep the effects it would have to write itself.
    """

    __tablename__ = "tracking_leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    fence: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(128), default="")  # "" once released
    beat: Mapped[int] = mapped_column(Integer, default=0)
    written_through: Mapped[float] = mapped_column(default=0.0)


class QuestionRecording(Base):
    """The caller's question in their own words, spoken after confirming a callback; or
    (``kind = "quality"``, migration 0015) a quality recording of an answered call of team
    ``team_id`` (cti/voice/quality.py), kept apart by retention and heard by its lead.

    Made by the call (keyed by its uniqueid) before the hopper may exist (virtual hold:
    only when the callback fails); ``create_hopper`` links it to the hopper that carries the
    call's request. ``path`` is the file on the host (0600), deleted with the hopper.
    """

    __tablename__ = "question_recordings"
    __table_args__ = NEVER_REUSED_IDS
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64), index=True)
    hopper_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    path: Mapped[str] = mapped_column(String(512))
    seconds: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(
        String(16), default="question", server_default="question", index=True
    )
    team_id: Mapped[str] = mapped_column(String(32), default="", server_default="")


class SurveyAnswer(Base):
    """One answer of the post-call survey: a key the caller pressed, never a guess.

    A caller who hangs up leaves no row (no answer is not a zero). ``agent`` is the
    extension that answered the call; it is shown only to that agent and their lead.
    """

    __tablename__ = "survey_answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64), index=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    agent: Mapped[str] = mapped_column(String(32), default="")
    question: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("call_uniqueid", "question"),)


class AnnouncementHearing(Base):
    """A caller heard an announcement (``announcement:<id>``) or a channel-steering text
    (``info:<key>``) and then either ended the call without reaching a person (``saved``)
    or went on to the KCC or a team (``went_on``). Written by the call listener once the
    call has ended."""

    __tablename__ = "announcement_hearings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(String(48), index=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))  # saved went_on
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("call_uniqueid", "item"),)


class SetAside(Base):
    """Work the database refused for a reason other than being down (cti/store/faults.py):
    kept with its error until `bereik events retry` replays it; purged with the calls."""

    __tablename__ = "set_aside"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), index=True)  # a replayer's name
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    set_aside_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    replayed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
