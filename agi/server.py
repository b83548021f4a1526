"""A small FastAGI server on asyncio streams.

Why our own: panoramisk's fast_agi freezes the loop on a client that closes before the
blank line, takes an unprompted HANGUP as the next command's result, reads one line of a
520 block; pyst2's is Python 2 and blocking. This one reads the header with a timeout,
treats HANGUP as a notification, times out every command and caps concurrent calls.

A handler must set the channel variable BEREIK_RESULT before it returns: Asterisk reports
AGISTATUS=SUCCESS for a socket that simply closes, so the dialplan checks both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from agi.admission import Admission, Limits
from agi.protocol import (
    AgiCommandFailed,
    AgiError,
    AgiHangup,
    AgiInvalidCommand,
    AgiProtocolError,
    AgiTimeout,
    AgiUsageError,
    Environment,
    Response,
    build_command,
    is_usage_end,
    is_usage_start,
    parse_env_line,
    parse_response,
)
from cti.privacy import mask_numbers_in

log = logging.getLogger("bereik.agi")

RESULT_VARIABLE = "BEREIK_RESULT"
LOOPBACK = ("127.0.0.1", "::1")
LINE_LIMIT = 256 * 1024


class CallLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['uniqueid'] if self.extra else '-'}] {msg}", kwargs


class AgiChannel:
    """One call's AGI conversation: send a command, get its parsed response."""

    def __init__(
        self,
        env: Environment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command_timeout: float,
        on_command: Callable[[float], None] | None = None,
        audio_seconds: Callable[[str], float] | None = None,
        on_first_command: Callable[[], None] | None = None,
    ) -> None:
        self.env = env
        self.hungup = False
        self.log = CallLog(log, {"uniqueid": env.uniqueid})
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout
        self._on_command = on_command
        self._audio_seconds = audio_seconds or _unknown_length
        self._on_first_command = on_first_command

    @property
    def query(self) -> dict[str, str]:
        return self.env.query

    async def command(
        self, name: str, *arguments: str | int, timeout: float | None = None
    ) -> Response:
        """Send one command and return its response; raise a typed AgiError otherwise."""
        line = build_command(name, *arguments)
        started = time.perf_counter()
        if self._on_first_command is not None:
            self._on_first_command()
            self._on_first_command = None
        try:
            self._writer.write(line.encode() + b"\n")
            await self._writer.drain()
            async with asyncio.timeout(timeout or self._timeout):
                response = await self._read_response()
        except TimeoutError:
            raise AgiTimeout(f"no answer to {name} within {timeout or self._timeout} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.hungup = True
            raise AgiHangup(f"connection lost during {name}") from exc
        if self._on_command:
            self._on_command(time.perf_counter() - started)
        return self._check(name, response)

    def _check(self, name: str, response: Response) -> Response:
        if response.code == 200:
            if response.result == "-1":
                raise AgiCommandFailed(f"{name} returned result=-1")
            return response
        if response.code == 511:
            self.hungup = True
            raise AgiHangup(f"{name}: channel is dead")
        if response.code == 510:
            raise AgiInvalidCommand(f"{name}: {response.data}")
        if response.code == 520:
            raise AgiUsageError(response.data)
        raise AgiProtocolError(f"{name}: unexpected response code {response.code}")

    async def _read_response(self) -> Response:
        while True:
            line = await self._read_line()
            if line == "HANGUP":
                # Asterisk tells us the caller hung up; the next line is still our answer.
                self.hungup = True
                continue
            if is_usage_start(line):
                usage = [line[4:]]
                while not is_usage_end(line):
                    line = await self._read_line()
                    usage.append(line[4:] if is_usage_end(line) else line)
                return Response(code=520, data="\n".join(usage))
            return parse_response(line)

    async def _read_line(self) -> str:
        try:
            raw = await self._reader.readline()
        except ValueError:
            # asyncio's readline raises ValueError past the line limit; the stream is out of
            # step from there on, so the conversation ends as a protocol error.
            raise AgiProtocolError(f"response line longer than {LINE_LIMIT} bytes") from None
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    # The commands handlers use; each is one line so the dialplan author can read them.

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def set_variable(self, name: str, value: str | int) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str:
        response = await self.command("GET VARIABLE", name)
        return response.data if response.result == "1" else ""

    # A prompt's command is answered when its audio has played (or a key cut it short), so
    # its timeout is the audio's length plus the ordinary command timeout: a 60-second
    # outage message must not look like a dead Asterisk after 10 s.

    async def play(self, sound: str, escape_digits: str = "") -> Response:
        """STREAM FILE; the response carries the key (result) and how far it played (endpos)."""
        return await self.command(
            "STREAM FILE",
            sound,
            escape_digits,
            timeout=self._audio_seconds(sound) + self._timeout,
        )

    async def stream_file(self, sound: str, escape_digits: str = "") -> str:
        """Play a sound; return the digit that interrupted it, or ""."""
        response = await self.play(sound, escape_digits)
        return chr(response.result_int) if response.result_int > 0 else ""

    async def get_data(self, sound: str, timeout_ms: int, max_digits: int) -> str:
        """Play a sound and collect up to `max_digits` keys (`#` ends); "" for none.

        Asterisk waits up to `timeout_ms` for each key, so the command may take the audio's
        length plus that wait per digit.
        """
        waiting = max(1, max_digits) * timeout_ms / 1000
        response = await self.command(
            "GET DATA",
            sound,
            timeout_ms,
            max_digits,
            timeout=self._audio_seconds(sound) + waiting + self._timeout,
        )
        return response.result if response.result not in ("", "-1") else ""

    async def wait_for_digit(self, timeout_ms: int) -> str:
        response = await self.command("WAIT FOR DIGIT", timeout_ms, timeout=timeout_ms / 1000 + 5)
        return chr(response.result_int) if response.result_int > 0 else ""

    async def exec(self, application: str, options: str = "") -> Response:
        return await self.command("EXEC", application, options, timeout=3600)

    async def verbose(self, message: str, level: int = 3) -> None:
        await self.command("VERBOSE", message, level)

    async def finish(self, result: str = "ok", **also: str) -> None:
        """Tell the dialplan this handler ran to its end (see module docstring), setting the
        variables in `also` with it.

        With `also`, one `EXEC MSet` sets them all in one round trip instead of one
        `SET VARIABLE` each (every command costs both processes a write, a read and a
        wake-up); BEREIK_RESULT last, as when set apart. MSet splits its argument at commas
        and quotes, so a value with anything but plain characters (a route is `kcc` or
        `team-7001`) is set by its own SET VARIABLE instead.
        """
        plain = {name: value for name, value in also.items() if _MSET_VALUE.fullmatch(value)}
        for name, value in also.items():
            if name not in plain:
                await self.set_variable(name, value)
        if not plain or not _MSET_VALUE.fullmatch(result):
            for name, value in plain.items():
                await self.set_variable(name, value)
            await self.set_variable(RESULT_VARIABLE, result)
            return
        pairs = [*plain.items(), (RESULT_VARIABLE, result)]
        await self.exec("MSet", ",".join(f"{name}={value}" for name, value in pairs))


# A value MSet passes through unchanged: no comma, quote, backslash, space or ${}.
_MSET_VALUE = re.compile(r"[A-Za-z0-9_.:+@/-]*")


def _unknown_length(sound: str) -> float:
    return 0.0


Handler = Callable[[AgiChannel], Awaitable[None]]


class FastAgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        limits: Limits | None = None,
        header_timeout: float = 5.0,
        command_timeout: float = 10.0,
        observer: AgiObserver | None = None,
        unavailable: tuple[type[BaseException], ...] = (),
        audio_seconds: Callable[[str], float] | None = None,
        secret: str = "",
        allowed_peers: Sequence[str] = LOOPBACK,
    ) -> None:
        self.routes = dict(routes)
        # Any local process could otherwise open a FastAGI session and act as a call:
        # only Asterisk's address may connect, and it must name the secret that was
        # rendered into its dialplan (agi://host:port/<secret>/ivr).
        self.secret = secret
        self.allowed_peers = [ipaddress.ip_network(p, strict=False) for p in allowed_peers]
        self._peers_seen: dict[str, bool] = {}
        # Errors of a service we depend on (the database): one log line, no traceback,
        # and the call takes the dialplan's fallback.
        self.unavailable = unavailable
        self.host = host
        self.port = port
        self.admission = Admission(limits or Limits())
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.audio_seconds = audio_seconds
        self.observer = observer or AgiObserver()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_accept = 0.0  # monotonic time of the last connection taken

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=LINE_LIMIT, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.admission.start()
        log.info("FastAGI listening on %s:%s", self.host, self.port)

    @property
    def listening(self) -> bool:
        """Whether the socket takes FastAGI sessions (a part on /healthz)."""
        return self._server is not None and self._server.is_serving()

    async def until_quiet(self, quiet: float, timeout: float) -> bool:
        """Wait until no connection has arrived for `quiet` s (at most `timeout` s); whether
        it went quiet. A balancer that has just taken this process out may still have a
        connection on its way: closing the socket on it would reset it (see drain)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            idle = now - self._last_accept
            if idle >= quiet:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(min(quiet - idle, deadline - now))

    async def drain(self, timeout: float) -> int:
        """Stop accepting connections, wait up to `timeout` s for the sessions in progress
        to end by themselves; returns how many were still running (close() cancels them).

        Closing the listening socket resets the connections still in the kernel's backlog;
        a proxy had counted those as made and cannot retry them. So a process behind a
        proxy leaves its rotation first (bereik/readiness.py) and drains only after; a new
        connection after the close is refused at once, and a proxy retries it elsewhere.
        """
        if self._server is None:
            return 0
        self._server.close()
        pending = {task for task in self._tasks if not task.done()}
        if pending:
            log.info("draining: %d FastAGI sessions in progress", len(pending))
            _, pending = await asyncio.wait(pending, timeout=timeout)
        return len(pending)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        await self.admission.close()
        self._server = None

    @property
    def active(self) -> int:
        return self.admission.active

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._last_accept = time.monotonic()
        try:
            peer = writer.get_extra_info("peername")
            if not self._peer_allowed(peer):
                # Closed before reading a byte; a call from there takes its fallback.
                log.warning("refusing FastAGI connection from %s: not in agi_allowed_peers", peer)
                self.observer.refused("peer")
                return
            refusal = self.admission.refusal()
            if refusal:
                # Closing without a result sends the call down the dialplan's fallback at
                # once, instead of a silence while this process catches up.
                log.warning(
                    "refusing FastAGI connection (%s): %d calls in progress, loop lag %.2f s",
                    refusal,
                    self.admission.active,
                    self.admission.lag,
                )
                self.observer.refused(refusal)
                return
            session = id(task)
            self.admission.admitted(session)
            try:
                await self._serve(reader, writer, session)
            finally:
                self.admission.ended(session)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _peer_allowed(self, peer: Any) -> bool:
        host = peer[0] if isinstance(peer, tuple) and peer else peer
        if not isinstance(host, str):
            return False  # no address (a Unix socket): not Asterisk over TCP
        # Every call comes from the same few Asterisk addresses: the answer is kept per
        # address (parsing one and matching it costs ~10 µs a call). Bounded, so a scan
        # from many addresses cannot grow it.
        allowed = self._peers_seen.get(host)
        if allowed is None:
            allowed = self._match_peer(host)
            if len(self._peers_seen) >= 64:
                self._peers_seen.clear()
            self._peers_seen[host] = allowed
        return allowed

    def _match_peer(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed_peers)

    def _route_name(self, path: str) -> str | None:
        """The handler name from `<secret>/<name>`; None if the secret is wrong or missing."""
        if not self.secret:
            return path
        given, _, name = path.partition("/")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return None
        return name

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: int
    ) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self.header_timeout):
                env = await read_environment(reader)
        except TimeoutError:
            log.warning(
                "FastAGI client %s sent no complete header in %.0f s", peer, self.header_timeout
            )
            return
        except (AgiProtocolError, ConnectionError, ValueError) as exc:
            log.warning("FastAGI client %s: %s", peer, exc)
            return
        if env is None:
            log.debug("FastAGI client %s closed before its header ended", peer)
            return
        try:
            path = env.script_path
        except AgiProtocolError as exc:
            log.warning("FastAGI client %s: %s", peer, exc)
            return
        name = self._route_name(path)
        if name is None:
            # Closed without a result: the dialplan's fallback runs for that call.
            log.warning("refusing FastAGI request from %s: wrong or missing secret", peer)
            self.observer.refused("secret")
            return
        channel = AgiChannel(
            env,
            reader,
            writer,
            self.command_timeout,
            self.observer.command,
            audio_seconds=self.audio_seconds,
            on_first_command=lambda: self.admission.first_command(session),
        )
        handler = self.routes.get(name)
        if handler is None:
            channel.log.error("no FastAGI handler for %r", name[:40])
            self.observer.failed(name or "-")
            return
        # Caller IDs are personal data: the log shows them masked (06******78).
        caller = mask_numbers_in(env.get("callerid")[:40])
        channel.log.info("%s: %s from %r", name, env.get("extension"), caller)
        started = time.perf_counter()
        try:
            await handler(channel)
        except AgiHangup:
            channel.log.info("%s: caller hung up", name)
        except AgiError as exc:
            channel.log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
            self.observer.failed(name)
        except asyncio.CancelledError:
            raise
        except self.unavailable as exc:
            channel.log.error(
                "%s: %s unavailable (%s); the dialplan takes its fallback",
                name,
                type(exc).__module__.split(".")[0],
                str(exc).splitlines()[0][:200],
            )
            self.observer.failed(name)
        except Exception:
            # Not a worker's fault but one call's: neither the supervisor's (raising would
            # end this connection's task only, with nothing to restart) nor the store's (a
            # call cannot wait). The dialplan's static fallback takes the call (the KCC,
            # or every member of the team); the failure counts on bereik_agi_failures_total
            # with the alert BereikAgiFailures.
            channel.log.exception("%s crashed; the dialplan takes its fallback", name)
            self.observer.failed(name)
        else:
            self.observer.handled(name, time.perf_counter() - started)


async def read_environment(reader: asyncio.StreamReader) -> Environment | None:
    """Read the agi_* block up to its blank line; None if the client closes before it.

    The block in one read, not an await of `readline` per line: Asterisk sends it in one
    piece (a header of 22 lines: 67 → 30 µs of CPU). Lines end in LF as Asterisk writes
    them (a stray CR before it is tolerated)."""
    try:
        block = await reader.readuntil(b"\n\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.startswith(b"\n"):
            raise AgiProtocolError("empty AGI header") from None
        return None
    except asyncio.LimitOverrunError:
        raise AgiProtocolError("AGI header longer than the stream's limit") from None
    text = block.decode("utf-8", errors="replace")
    if text.startswith("\n"):
        raise AgiProtocolError("empty AGI header")
    values: dict[str, str] = {}
    for line in text[:-2].split("\n"):
        key, value = parse_env_line(line.rstrip("\r"))
        values[key] = value
    return Environment(values)


class AgiObserver:
    """Hooks for metrics; the default does nothing so the server has no metrics import."""

    def command(self, seconds: float) -> None:
        pass

    def handled(self, handler: str, seconds: float) -> None:
        pass

    def failed(self, handler: str) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass


__all__ = [
    "RESULT_VARIABLE",
    "AgiChannel",
    "AgiError",
    "AgiObserver",
    "FastAgiServer",
    "Handler",
    "Limits",
]
