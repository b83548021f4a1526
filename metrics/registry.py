"""The metrics contract: every series Bereik exports on /metrics.

The metric names and label sets below are the contract with the Prometheus rules in
deploy/prometheus and the Grafana dashboards in deploy/grafana; renaming one breaks a wall
screen silently, so tests/unit/test_grafana.py checks every name those files use exists here.

Labels are bounded on purpose. A caller's number (personal data under the BIO, and unbounded)
is never a label; ``team`` is a configured team id or ``"kcc"``; every other label has a
fixed set of values, listed in the constants below. The recording helpers drop (and log once)
a value outside those sets rather than create a new series, because one stray label value
per call would grow Prometheus without bound and cannot be taken back.

Each ``BereikMetrics`` owns its own ``CollectorRegistry`` rather than the process-global one,
so tests can build as many as they like and ``bereik serve`` exports only these series.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger("bereik.metrics")

KCC = "kcc"
ENTRIES = ("14070", "team", "internal")
TRANSFER_RESULTS = ("answered", "no_answer", "busy", "failed")
HOPPER_REASONS = ("no_answer", "busy", "nobody_present", "after_hours", "manual", "abandoned")
WITHIN_NORM = ("true", "false")
NORM_WINDOWS = ("today", "7d", "28d")
UNKNOWN_HANDLER = "unknown"
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# Contact-centre waits: the first buckets separate "answered at once" from "answered within
# the usual 20-30 s target"; the tail reaches the 10 minutes after which callers are gone.
WAIT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
# One AGI command is a local round trip to Asterisk: normally well under a millisecond; the
# upper buckets show a loaded Asterisk (or event loop) long before a caller hears it.
AGI_COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


OVERFLOW_REASONS = ("max_wait", "full", "nobody_signed_in", "closing", "other")
VIRTUAL_HOLD_STAGES = ("offered", "made", "reached")
AGENT_STATES = ("signed_out", "available", "on_call", "wrapup", "paused")
QUESTION_RESULTS = ("recorded", "skipped")
QUALITY_RESULTS = ("recorded", "refused")
HEARING_RESULTS = ("saved", "went_on")
# What a worker sets aside when the database refuses it (cti/store/faults.py).
SET_ASIDE_SOURCES = (
    "call events",
    "queue events",
    "virtual hold events",
    "callback reminders",
    "abandoned callback",
)


class VoiceSeries:
    """The citizen's own voice: recorded questions, the post-call survey, and what
    announcements save. The gauges are today's figures from the database (cti/survey,
    cti/announcements/savings.py), set every few seconds; their ``question`` label is a
    configured survey question id and ``item`` an active announcement or a menu ``info``
    key, so both stay as few as the configuration and the operators make them."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.questions = Counter(
            "bereik_question_recordings",
            "Callers offered to speak their question after a confirmed callback, by result.",
            ["result"],
            registry=r,
        )
        self.quality = Counter(
            "bereik_quality_recordings",
            "Callers chosen for a quality recording, by team and result (recorded, or "
            "refused with the key).",
            ["team", "result"],
            registry=r,
        )
        self.survey_asked = Counter(
            "bereik_survey_asked",
            "Callers asked the post-call survey (the agent hung up first), by team.",
            ["team"],
            registry=r,
        )
        self.survey_answers = Gauge(
            "bereik_survey_answers_today",
            "Survey answers given today, by team and question (hang-ups give none).",
            ["team", "question"],
            registry=r,
        )
        self.survey_average = Gauge(
            "bereik_survey_average_today",
            "Today's average answer to a score question (1..answers), by team.",
            ["team", "question"],
            registry=r,
        )
        self.survey_yes = Gauge(
            "bereik_survey_yes_ratio_today",
            "Today's share of 'yes' (key 1) to a yes/no question, by team.",
            ["team", "question"],
            registry=r,
        )
        self.announcement_callers = Gauge(
            "bereik_announcement_callers_today",
            "Callers today who heard an announcement or channel-steering text and then "
            "ended the call without a person (saved) or went on to the KCC or a team.",
            ["item", "result"],
            registry=r,
        )
        for result in QUESTION_RESULTS:
            self.questions.labels(result=result)

    def set_or_remove(self, gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        """None removes the series: no answers is "no data", not an average of 0."""
        if value is None:
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
        else:
            gauge.labels(*labels).set(value)


class FirstLineSeries:
    """First-line resolution today, per team (cti/reports/firstline.py), from the database."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.ratio = Gauge(
            "bereik_first_line_ratio",
            "Share of today's calls a team (kcc: the contact centre) answered first and "
            "handled itself, without a transfer or a hopper. Absent before the first answer.",
            ["team"],
            registry=r,
        )
        self.repeat = Gauge(
            "bereik_repeat_callers_ratio",
            "Share of today's answered callers (known numbers) who called again within "
            "norms.repeat_days working days. Absent before the first answer.",
            ["team"],
            registry=r,
        )
        self.transfers = Gauge(
            "bereik_first_line_transfers",
            "Calls another team (mostly the KCC) answered today and passed on to this team.",
            ["to_team"],
            registry=r,
        )
        self.target = Gauge(
            "bereik_first_line_target",
            "The first-line target (norms.first_line_target): the wall screen's target line.",
            registry=r,
        )

    def set(
        self, figures: Mapping[str, tuple[float | None, float | None, int]], target: float
    ) -> None:
        """team -> (first-line share, repeat share, transfers in); a None removes it."""
        self.target.set(target)
        for team, (share, repeat, transfers_in) in figures.items():
            for gauge, value in ((self.ratio, share), (self.repeat, repeat)):
                if value is None:
                    try:
                        gauge.remove(team)
                    except KeyError:
                        pass
                else:
                    gauge.labels(team).set(value)
            self.transfers.labels(team).set(transfers_in)


class QueueSeries:
    """The waiting lines' series (cti/queue), per queue ("kcc", or a team id).

    Counters move when a caller's stay in line is decided (the ``queue_calls`` row is
    updated from an empty outcome, so a stay is counted once); the gauges are set from the
    queue's events and from the database every few seconds.
    """

    def __init__(self, r: CollectorRegistry) -> None:
        self.offered = Counter(
            "bereik_queue_offered",
            "Callers who came to the waiting line (also those turned away at once by an "
            "overflow rule), counted when their stay is decided.",
            ["queue"],
            registry=r,
        )
        self.answered = Counter(
            "bereik_queue_answered", "Callers in line answered by an agent.", ["queue"], registry=r
        )
        self.answered_in_level = Counter(
            "bereik_queue_answered_within_level",
            "Callers answered within the queue's service_level_seconds.",
            ["queue"],
            registry=r,
        )
        self.abandoned = Counter(
            "bereik_queue_abandoned",
            "Callers who hung up while in line; short=true when within short_abandon_seconds "
            "(a wrong number, kept apart from missed callers).",
            ["queue", "short"],
            registry=r,
        )
        self.overflow = Counter(
            "bereik_queue_overflow",
            "Callers sent to the callback offer by an overflow rule, by reason.",
            ["queue", "reason"],
            registry=r,
        )
        self.virtual_hold = Counter(
            "bereik_queue_virtual_hold",
            "Callbacks that keep the caller's place: offered (the caller pressed 1 and "
            "confirmed), made (an agent was rung for it), reached (the citizen answered).",
            ["queue", "stage"],
            registry=r,
        )
        self.wait = Histogram(
            "bereik_queue_wait_seconds",
            "How long an answered caller was in line before an agent answered.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.waiting = Gauge(
            "bereik_queue_callers_waiting",
            "Callers in the line now, waiting for an agent (virtual-hold placeholders too).",
            ["queue"],
            registry=r,
        )
        self.longest = Gauge(
            "bereik_queue_longest_wait_seconds",
            "How long the caller who waits longest now has been in line (0: nobody).",
            ["queue"],
            registry=r,
        )
        self.agents = Gauge(
            "bereik_queue_agents",
            "Agents of the queue per state: signed_out, available, on_call, wrapup, paused.",
            ["queue", "state"],
            registry=r,
        )
        self.service_level = Gauge(
            "bereik_queue_service_level_ratio",
            "Today: answered within service_level_seconds / (answered + abandoned after "
            "short_abandon_seconds + overflowed). Absent when no caller counts yet.",
            ["queue"],
            registry=r,
        )
        self.asa = Gauge(
            "bereik_queue_average_answer_seconds",
            "Today: average speed of answer (seconds in line of answered callers).",
            ["queue"],
            registry=r,
        )
        self.agents_needed = Gauge(
            "bereik_queue_agents_needed",
            "Erlang C forecast: agents needed in the next hour to hold the service level "
            "target, from the last hour's arrivals and handling time.",
            ["queue"],
            registry=r,
        )
        self.init_queue(KCC)

    def init_queue(self, queue: str) -> None:
        """Every series of this queue ("kcc" or a team id) at 0, before its first caller."""
        for state in AGENT_STATES:
            self.agents.labels(queue, state).set(0)
        for stage in VIRTUAL_HOLD_STAGES:
            self.virtual_hold.labels(queue, stage)
        self.offered.labels(queue)
        self.answered.labels(queue)
        self.answered_in_level.labels(queue)
        self.wait.labels(queue)
        for short in ("true", "false"):
            self.abandoned.labels(queue, short)
        for reason in OVERFLOW_REASONS:
            self.overflow.labels(queue, reason)
        self.waiting.labels(queue).set(0)
        self.longest.labels(queue).set(0)

    def set_agents(self, queue: str, counts: Mapping[str, int]) -> None:
        for state in AGENT_STATES:
            self.agents.labels(queue, state).set(counts.get(state, 0))

    def set_ratio(self, gauge: Gauge, queue: str, value: float | None) -> None:
        if value is None:
            try:
                gauge.remove(queue)
            except KeyError:
                pass
        else:
            gauge.labels(queue).set(value)


class BereikMetrics:
    """All Bereik metrics, in a registry of their own.

    The metric objects are public attributes for code that needs them directly; the
    methods below are the preferred way to record, because they keep labels bounded.
    """

    def __init__(self, teams: Iterable[str] = (), handlers: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.teams: tuple[str, ...] = ()
        self.handlers: tuple[str, ...] = ()
        self._rejected: set[tuple[str, str]] = set()
        r = self.registry

        self.calls_offered = Counter(
            "bereik_calls_offered",
            "Calls that reached the exchange, by how they came in: entry=14070 for the "
            "general number, team for a team number dialled directly, internal for a call "
            "from an extension.",
            ["entry"],
            registry=r,
        )
        self.calls_answered = Counter(
            "bereik_calls_answered",
            "Calls answered by a person, by the team that answered (kcc for the contact "
            "centre). Counted once per call, at the first answer.",
            ["team"],
            registry=r,
        )
        self.calls_abandoned = Counter(
            "bereik_calls_abandoned",
            "Calls where the caller hung up while waiting for the team (kcc for the contact "
            "centre) to answer.",
            ["team"],
            registry=r,
        )
        self.transfers = Counter(
            "bereik_transfers",
            "Transfers to a team number, by target team and result (answered, no_answer, "
            "busy, failed). A failed transfer is the exchange's fault, not the team's.",
            ["to_team", "result"],
            registry=r,
        )
        self.hoppers_created = Counter(
            "bereik_hoppers_created",
            "Hoppers (callback requests) created, by team and reason (no_answer, busy, "
            "nobody_present, after_hours, manual).",
            ["team", "reason"],
            registry=r,
        )
        self.callbacks = Counter(
            "bereik_callbacks",
            "Hoppers closed, by team and whether the caller was called back within the "
            "team's service norm (within_norm=true/false).",
            ["team", "within_norm"],
            registry=r,
        )
        self.calls_waiting = Gauge(
            "bereik_calls_waiting",
            "Callers waiting right now for the team (kcc for the contact centre) to answer.",
            ["team"],
            registry=r,
        )
        self.wait_seconds = Histogram(
            "bereik_wait_seconds",
            "How long an answered caller waited (ringing or queued) before a person of the "
            "team answered, in seconds.",
            ["team"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.hoppers_open = Gauge(
            "bereik_hoppers_open",
            "Hoppers not yet closed, per team, as stored in the database.",
            ["team"],
            registry=r,
        )
        self.hoppers_overdue = Gauge(
            "bereik_hoppers_overdue",
            "Open hoppers past their deadline (the service norm is already missed), per team.",
            ["team"],
            registry=r,
        )
        self.ami_connected = Gauge(
            "bereik_ami_connected",
            "1 while the AMI connection to Asterisk is up and logged in, else 0. While 0 the "
            "exchange still routes calls but Bereik sees no events (no hoppers on no-answer).",
            registry=r,
        )
        self.service_norm_ratio = Gauge(
            "bereik_service_norm_ratio",
            "Share of decided calls that met the telephone service norm (answered directly, "
            "or called back within the team's working days), per team and window "
            "(today since local midnight, 7d, 28d). Computed from the database. Absent when "
            "no call in the window is decided yet. Target: 0.9.",
            ["team", "window"],
            registry=r,
        )
        self.agi_requests = Counter(
            "bereik_agi_requests",
            "FastAGI requests that reached a handler and ended, by handler (unknown for a "
            "script name with no handler). Callers hanging up mid-request are not counted.",
            ["handler"],
            registry=r,
        )
        self.agi_failures = Counter(
            "bereik_agi_failures",
            "FastAGI requests that failed (error, crash, or no such handler): the call took "
            "the dialplan's fallback.",
            ["handler"],
            registry=r,
        )
        self.agi_command_seconds = Histogram(
            "bereik_agi_command_seconds",
            "Round trip of one AGI command to Asterisk and back, in seconds.",
            buckets=AGI_COMMAND_BUCKETS,
            registry=r,
        )
        self.agi_refused = Counter(
            "bereik_agi_refused",
            "FastAGI connections refused at once (the dialplan's fallback took the call): "
            "reason calls (agi_max_connections in progress), stalled (earlier calls still "
            "wait for their first prompt), slow (recent calls waited too long for theirs), "
            "lag (the event loop runs late), peer (an address outside "
            "server.agi_allowed_peers) or secret (no or a wrong FastAGI secret).",
            ["reason"],
            registry=r,
        )
        for reason in ("calls", "stalled", "slow", "lag", "peer", "secret"):
            self.agi_refused.labels(reason)  # at 0 from the start, for rate() and alerts
        self.recording_pin_lockouts = Counter(
            "bereik_recording_pin_lockouts",
            "Extensions locked out of recording announcements by phone after repeated wrong "
            "PINs (someone may be guessing the PIN).",
            registry=r,
        )
        self.login_lockouts = Counter(
            "bereik_login_lockouts",
            "Sign-in waits started: a name got repeated wrong passwords or second-factor "
            "codes from one address, which now waits (cti/users/backoff.py; the account "
            "itself stays usable from elsewhere). Someone may be guessing passwords.",
            registry=r,
        )
        self.ami_events_dropped = Counter(
            "bereik_ami_events_dropped",
            "AMI events dropped because the event queue was full; figures may be incomplete.",
            registry=r,
        )
        self.ami_event_failures = Counter(
            "bereik_ami_event_failures",
            "AMI events a part of bereik serve failed on (a fault in the code, logged with "
            "its traceback), by the part (subscriber: a function name from the code); that "
            "part skipped the event, so its rows or screens may miss it.",
            ["subscriber"],
            registry=r,
        )

        # What callers choose in the 14070 menu. Why: nobody knew what callers ask; the share
        # of each key (and of wrong keys and silence) shows whether the menu and the
        # website's channel steering work, on facts.
        self.ivr_choices = Counter(
            "bereik_ivr_choices",
            "Menu choices on 14070: path is the key path (1, 3.1; 'none' for no key, "
            "'invalid' for a wrong key), destination where it led (team id, kcc, info, "
            "submenu, or retry).",
            ["path", "destination"],
            registry=r,
        )
        self.ivr_closed_calls = Counter(
            "bereik_ivr_closed_calls",
            "Calls to 14070 outside opening hours, by what the caller did: callback "
            "(left a request), repeat (already had one), none (heard the hours only).",
            ["action"],
            registry=r,
        )
        self.announcements_played = Counter(
            "bereik_announcements_played",
            "Announcements played to callers (to the end or cut short by a key), by kind.",
            ["scope_kind"],
            registry=r,
        )

        # Every long-running part of `bereik serve` (cti/supervisor.py): worker names come
        # from the code and the configured AMI nodes, so the label stays bounded.
        self.worker_up = Gauge(
            "bereik_worker_up",
            "1 while a long-running part of bereik serve runs (or finished its one-off job), "
            "0 while it waits to be restarted after a crash.",
            ["worker"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "bereik_worker_restarts",
            "Times a long-running part of bereik serve crashed and was restarted.",
            ["worker"],
            registry=r,
        )
        self.set_aside = Counter(
            "bereik_set_aside",
            "Work items the database refused for a reason other than being down (a value "
            "the schema refuses), kept in the set_aside table with the error, by source; "
            "`bereik events list` shows them, `bereik events retry` replays them.",
            ["source"],
            registry=r,
        )
        for source in SET_ASIDE_SOURCES:
            self.set_aside.labels(source=source)
        self.disk_free = Gauge(
            "bereik_disk_free_bytes",
            "Bytes free on the file system of the instance directory (recordings, prompts, "
            "logs). Below bereik_disk_free_minimum_bytes no recording is started.",
            registry=r,
        )
        self.disk_free_minimum = Gauge(
            "bereik_disk_free_minimum_bytes",
            "server.disk_free_mb in bytes: below it /healthz answers 503, recordings are "
            "refused with a spoken apology and BereikDiskLow fires.",
            registry=r,
        )

        self.queue = QueueSeries(r)
        self.voice = VoiceSeries(r)
        self.first_line = FirstLineSeries(r)

        self.ami_connected.set(0)
        self.init_teams(teams)
        self.init_handlers(handlers)

    # -- set-up ------------------------------------------------------------------------

    def init_teams(self, teams: Iterable[str]) -> None:
        """Create every per-team series at 0 for these team ids (and for "kcc").

        Dashboards and ``increase()`` need a series to exist before its first event: a
        counter born at 1 shows no increase, and a team with no calls yet would be missing
        from the wall screen. Safe to call again after a configuration reload; it only adds.
        The norm ratio is not pre-created: 0 % would be a false alarm, so it appears with
        the first decided call.
        """
        known = list(self.teams)
        for team in [KCC, *teams]:
            if team not in known:
                known.append(team)
        self.teams = tuple(known)
        for team in self.teams:
            self.calls_answered.labels(team=team)
            self.calls_abandoned.labels(team=team)
            self.calls_waiting.labels(team=team)
            self.wait_seconds.labels(team=team)
            self.hoppers_open.labels(team=team)
            self.hoppers_overdue.labels(team=team)
            for within in WITHIN_NORM:
                self.callbacks.labels(team=team, within_norm=within)
            for reason in HOPPER_REASONS:
                self.hoppers_created.labels(team=team, reason=reason)
            # The KCC too: a team can pass a call back to the KCC number.
            for result in TRANSFER_RESULTS:
                self.transfers.labels(to_team=team, result=result)
            self.voice.survey_asked.labels(team=team)
        for entry in ENTRIES:
            self.calls_offered.labels(entry=entry)

    def init_handlers(self, handlers: Iterable[str]) -> None:
        """Create the FastAGI series at 0 for these handler names (the server's routes)."""
        known = list(self.handlers)
        for handler in [*handlers, UNKNOWN_HANDLER]:
            if handler not in known:
                known.append(handler)
        self.handlers = tuple(known)
        for handler in self.handlers:
            self.agi_requests.labels(handler=handler)
            self.agi_failures.labels(handler=handler)

    def init_worker(self, worker: str) -> None:
        """A supervised part's series, at 0 restarts, before its first run."""
        self.worker_up.labels(worker=worker).set(0)
        self.worker_restarts.labels(worker=worker)

    def set_worker_up(self, worker: str, up: bool) -> None:
        self.worker_up.labels(worker=worker).set(1 if up else 0)

    def worker_restarted(self, worker: str) -> None:
        self.worker_restarts.labels(worker=worker).inc()

    def work_set_aside(self, source: str) -> None:
        if self._allowed("source", source, SET_ASIDE_SOURCES):
            self.set_aside.labels(source=source).inc()

    # -- recording ---------------------------------------------------------------------

    def call_offered(self, entry: str) -> None:
        if self._allowed("entry", entry, ENTRIES):
            self.calls_offered.labels(entry=entry).inc()

    def call_answered(self, team: str, wait_seconds: float | None = None) -> None:
        """One call answered by a person of ``team``; ``wait_seconds`` feeds the histogram."""
        if self._allowed("team", team, self.teams):
            self.calls_answered.labels(team=team).inc()
            if wait_seconds is not None and wait_seconds >= 0:
                self.wait_seconds.labels(team=team).observe(wait_seconds)

    def call_abandoned(self, team: str) -> None:
        if self._allowed("team", team, self.teams):
            self.calls_abandoned.labels(team=team).inc()

    def transfer(self, to_team: str, result: str) -> None:
        if self._allowed("team", to_team, self.teams) and self._allowed(
            "result", result, TRANSFER_RESULTS
        ):
            self.transfers.labels(to_team=to_team, result=result).inc()

    def question_recorded(self, result: str) -> None:
        if self._allowed("result", result, QUESTION_RESULTS):
            self.voice.questions.labels(result=result).inc()

    def quality_recording(self, team: str, result: str) -> None:
        if self._allowed("team", team, self.teams) and self._allowed(
            "result", result, QUALITY_RESULTS
        ):
            self.voice.quality.labels(team=team, result=result).inc()

    def survey_asked(self, team: str) -> None:
        if self._allowed("team", team, self.teams):
            self.voice.survey_asked.labels(team=team).inc()

    def recording_pin_locked(self) -> None:
        self.recording_pin_lockouts.inc()

    def hopper_created(self, team: str, reason: str) -> None:
        if self._allowed("team", team, self.teams) and self._allowed(
            "reason", reason, HOPPER_REASONS
        ):
            self.hoppers_created.labels(team=team, reason=reason).inc()

    def callback_closed(self, team: str, within_norm: bool) -> None:
        """A hopper of ``team`` closed; ``within_norm`` as decided at closing."""
        if self._allowed("team", team, self.teams):
            self.callbacks.labels(team=team, within_norm="true" if within_norm else "false").inc()

    def set_waiting(self, team: str, waiting: int) -> None:
        if self._allowed("team", team, self.teams):
            self.calls_waiting.labels(team=team).set(max(waiting, 0))

    def set_ami_connected(self, connected: bool) -> None:
        self.ami_connected.set(1 if connected else 0)

    def ami_event_dropped(self, count: int = 1) -> None:
        self.ami_events_dropped.inc(count)

    def init_ami_subscriber(self, subscriber: str) -> None:
        """A part that takes AMI events: its failure count, at 0 (cti/ami/bus.py)."""
        self.ami_event_failures.labels(subscriber=subscriber)

    def ami_event_failed(self, subscriber: str) -> None:
        self.ami_event_failures.labels(subscriber=subscriber).inc()

    def set_hopper_gauges(self, gauges: Mapping[str, tuple[int, int]]) -> None:
        """Set open and overdue hoppers from ``cti.calls.norms.hopper_gauges``.

        Known teams missing from ``gauges`` have none open, so they are set to 0 (the
        database query only returns teams that have open hoppers).
        """
        for team in self.teams:
            open_, overdue = gauges.get(team, (0, 0))
            self.hoppers_open.labels(team=team).set(open_)
            self.hoppers_overdue.labels(team=team).set(overdue)
        for team in gauges:
            self._allowed("team", team, self.teams)  # only to log an unknown team once

    def set_norm_ratios(self, ratios: Mapping[tuple[str, str], float | None]) -> None:
        """Set the norm gauges from ``cti.calls.norms.norm_ratios``.

        ``None`` (nothing decided in the window) removes the series rather than exporting
        NaN or 0: a stat panel then says "no data", and no alert fires on a team that simply
        had no calls.
        """
        for (team, window), ratio in ratios.items():
            if not (
                self._allowed("team", team, self.teams)
                and self._allowed("window", window, NORM_WINDOWS)
            ):
                continue
            if ratio is None or math.isnan(ratio):
                try:
                    self.service_norm_ratio.remove(team, window)
                except KeyError:
                    pass
            else:
                self.service_norm_ratio.labels(team=team, window=window).set(ratio)

    # -- export ------------------------------------------------------------------------

    content_type = CONTENT_TYPE_LATEST  # for the /metrics response header

    def render(self) -> bytes:
        """The text exposition of this registry, for the /metrics handler."""
        return generate_latest(self.registry)

    def _allowed(self, label: str, value: str, allowed: Iterable[str]) -> bool:
        if value in allowed:
            return True
        # Show the value only if it looks like an identifier (a team id typo): anything
        # else may be a caller's number, which does not belong in a log (BIO).
        shown = value if _IDENTIFIER.match(value) else f"<{len(value)} characters, not shown>"
        if (label, shown) not in self._rejected and len(self._rejected) < 100:
            # Once per value, and a bounded set: a bug that sends a bad value on every call
            # must neither flood the log nor grow memory.
            self._rejected.add((label, shown))
            log.warning("metrics: dropping unknown %s label value %s", label, shown)
        return False

    # -- reading back ------------------------------------------------------------------

    def gauge_values(self, name: str, label: str) -> dict[str, float]:
        """Current values of one of our gauges by one label (the board shows them live)."""
        values: dict[str, float] = {}
        for metric in self.registry.collect():
            if metric.name == name:
                for sample in metric.samples:
                    values[sample.labels.get(label, "")] = sample.value
        return values
