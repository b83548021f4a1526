"""The FastAGI server (agi/server.py) against a fake Asterisk over a real socket.

Each test plays Asterisk's side of the conversation line by line, including the ways
Asterisk and broken clients really behave: a header that never ends, a client that closes
before the blank line, an unprompted HANGUP line, a multi-line 520 usage block, 510/511 and
result=-1, a command never answered, more calls than the server takes, and a caller ID
that tries to smuggle a second command into the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agi.protocol import (
    AgiCommandFailed,
    AgiHangup,
    AgiInvalidCommand,
    AgiTimeout,
    AgiUsageError,
)
from agi.server import AgiChannel, AgiObserver, FastAgiServer, Limits
from tests.support.agi_args import asterisk_args

HEADER = (
    "agi_network: yes\n"
    "agi_network_script: {script}\n"
    "agi_request: agi://127.0.0.1/{script}\n"
    "agi_channel: PJSIP/trunk-00000001\n"
    "agi_uniqueid: {uniqueid}\n"
    "agi_callerid: 0612345678\n"
    "\n"
)
USAGE_520 = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
    "    Send the given file, allowing playback to be interrupted by the given digits.\n"
    "520 End of proper usage.\n"
)


class Recorder(AgiObserver):
    def __init__(self) -> None:
        self.refusals = 0
        self.reasons: list[str] = []
        self.handled_names: list[str] = []
        self.failed_names: list[str] = []

    def refused(self, reason: str) -> None:
        self.refusals += 1
        self.reasons.append(reason)

    def handled(self, handler: str, seconds: float) -> None:
        self.handled_names.append(handler)

    def failed(self, handler: str) -> None:
        self.failed_names.append(handler)


class FakeAsterisk:
    """Asterisk's end of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def call(cls, port: int, script: str = "test", uniqueid: str = "1.1") -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        await fake.send(HEADER.format(script=script, uniqueid=uniqueid))
        return fake

    async def send(self, text: str) -> None:
        self.writer.write(text.encode())
        await self.writer.drain()

    async def command(self, timeout: float = 2.0) -> str:
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), f"no complete command line: {line!r}"
        return line.decode().rstrip("\n")

    async def closed_by_server(self, timeout: float = 2.0) -> bool:
        """True once the server closed; a reset counts (it closed with our header unread)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[AgiChannel], Awaitable[None]]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def start(recorder: Recorder) -> AsyncIterator[Callable[..., Awaitable[FastAgiServer]]]:
    servers: list[FastAgiServer] = []

    async def _start(handler: Handler | None = None, **options: Any) -> FastAgiServer:
        routes = {"test": handler} if handler else {}
        defaults: dict[str, Any] = {"header_timeout": 0.5, "command_timeout": 0.5}
        server = FastAgiServer(routes, port=0, observer=recorder, **(defaults | options))
        await server.start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


class Outcome:
    """What a handler saw: the results of its commands, or the error that ended it."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.error: BaseException | None = None
        self.done = asyncio.Event()


def handler_doing(*steps: Callable[[AgiChannel], Awaitable[Any]]) -> tuple[Handler, Outcome]:
    outcome = Outcome()

    async def handler(channel: AgiChannel) -> None:
        try:
            for step in steps:
                outcome.values.append(await step(channel))
        except BaseException as exc:
            outcome.error = exc
            raise
        finally:
            outcome.done.set()

    return handler, outcome


async def test_a_header_that_never_ends_is_dropped_after_the_header_timeout(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(header_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_network_script: test\n")  # no blank line, ever
    began = time.monotonic()
    async with asyncio.timeout(3):
        assert await reader.read() == b""
    assert 0.25 < time.monotonic() - began < 2.0
    assert "sent no complete header" in caplog.text
    writer.close()


async def test_a_client_closing_before_the_blank_line_does_not_freeze_the_loop(
    start: Any, recorder: Recorder
) -> None:
    handler, outcome = handler_doing(lambda ch: ch.set_variable("X", "1"))
    server = await start(handler, header_timeout=30)
    # First client: half a header, then its end of the socket closes.
    _, early = await asyncio.open_connection("127.0.0.1", server.port)
    early.write(b"agi_network: yes\nagi_network_script: te")
    await early.drain()
    early.write_eof()
    # Second client, meanwhile: a complete call must be served at once (header timeout 30 s).
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command(timeout=2) == 'SET VARIABLE "X" "1"'
    await fake.send("200 result=1\n")
    async with asyncio.timeout(2):
        await outcome.done.wait()
    assert outcome.error is None
    assert await fake.closed_by_server()
    early.close()
    fake.close()
    assert recorder.handled_names == ["test"]


async def test_an_unprompted_hangup_line_is_a_notification_not_the_result(start: Any) -> None:
    seen: dict[str, Any] = {}

    async def handler(channel: AgiChannel) -> None:
        seen["digit"] = await channel.get_variable("CALLERID(num)")
        seen["hungup"] = channel.hungup

    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command() == 'GET VARIABLE "CALLERID(num)"'
    await fake.send("HANGUP\n200 result=1 (0612345678)\n")
    assert await fake.closed_by_server()
    assert seen == {"digit": "0612345678", "hungup": True}


async def test_a_multi_line_520_is_one_usage_error_and_the_stream_stays_in_step(
    start: Any,
) -> None:
    results: dict[str, Any] = {}

    async def handler(channel: AgiChannel) -> None:
        with pytest.raises(AgiUsageError) as usage:
            await channel.command("STREAM FILE")
        results["usage"] = usage.value.usage
        results["next"] = (await channel.command("NOOP")).result

    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command() == "STREAM FILE"
    await fake.send(USAGE_520)
    assert await fake.command() == "NOOP"
    await fake.send("200 result=0\n")
    assert await fake.closed_by_server()
    assert "Usage: STREAM FILE <filename>" in results["usage"]
    assert results["usage"].count("\n") == 3  # one error holding all four lines
    assert results["next"] == "0"  # the NOOP got its own answer, not a line of the 520


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("510 Invalid or unknown command\n", AgiInvalidCommand),
        ("511 Command Not Permitted on a dead channel or intercept routine\n", AgiHangup),
        ("200 result=-1\n", AgiCommandFailed),
    ],
)
async def test_error_answers_are_typed_errors(
    start: Any, recorder: Recorder, answer: str, error: type[Exception]
) -> None:
    handler, outcome = handler_doing(lambda ch: ch.command("STREAM FILE", "x", ""))
    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    await fake.command()
    await fake.send(answer)
    assert await fake.closed_by_server()
    assert type(outcome.error) is error
    # A hangup is the caller's doing; the others are failures worth a metric.
    assert recorder.failed_names == ([] if error is AgiHangup else ["test"])


async def test_a_command_never_answered_times_out(start: Any) -> None:
    handler, outcome = handler_doing(lambda ch: ch.answer())
    server = await start(handler, command_timeout=0.3)
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command() == "ANSWER"
    began = time.monotonic()
    assert await fake.closed_by_server(timeout=3)
    assert isinstance(outcome.error, AgiTimeout)
    assert 0.25 < time.monotonic() - began < 2.0


async def test_calls_over_max_connections_are_refused_at_once(
    start: Any, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    handler, outcome = handler_doing(lambda ch: ch.answer())
    server = await start(handler, limits=Limits(max_calls=1), command_timeout=5)
    first = await FakeAsterisk.call(server.port, uniqueid="1.1")
    assert await first.command() == "ANSWER"  # the first call is in its handler
    second = await FakeAsterisk.call(server.port, uniqueid="1.2")
    assert await second.closed_by_server(timeout=1)  # closed without a command
    assert recorder.reasons == ["calls"]
    assert "refusing FastAGI connection" in caplog.text
    await first.send("200 result=0\n")
    assert await first.closed_by_server()
    assert outcome.error is None and server.active == 0
    first.close()
    second.close()


async def test_a_caller_id_cannot_inject_a_second_command(start: Any) -> None:
    hostile = 'Jan "de Vries"\nEXEC System "rm -rf /"\r\nHANGUP \\'
    handler, outcome = handler_doing(lambda ch: ch.set_variable("CALLERID(name)", hostile))
    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    line = await fake.command()
    assert asterisk_args(line) == [
        "SET",
        "VARIABLE",
        "CALLERID(name)",
        hostile.replace("\r", " ").replace("\n", " "),
    ]
    await fake.send("200 result=1\n")
    assert await fake.closed_by_server()
    # Nothing else came down the socket: the command was exactly one line.
    assert outcome.error is None


async def test_a_route_and_the_result_are_set_in_one_command(start: Any) -> None:
    handler, outcome = handler_doing(lambda ch: ch.finish(BEREIK_ROUTE="team-7001"))
    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command() == 'EXEC "MSet" "BEREIK_ROUTE=team-7001,BEREIK_RESULT=ok"'
    await fake.send("200 result=0\n")
    assert await fake.closed_by_server()
    assert outcome.error is None


async def test_a_value_msets_would_split_is_set_by_its_own_command_before_the_result(
    start: Any,
) -> None:
    value = 'a,b "c" ${X}'
    handler, outcome = handler_doing(lambda ch: ch.finish(BEREIK_NOTE=value, BEREIK_ROUTE="kcc"))
    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    lines = []
    for _ in range(2):
        lines.append(await fake.command())
        await fake.send("200 result=1\n")
    assert asterisk_args(lines[0]) == ["SET", "VARIABLE", "BEREIK_NOTE", value]
    assert lines[1] == 'EXEC "MSet" "BEREIK_ROUTE=kcc,BEREIK_RESULT=ok"'
    assert await fake.closed_by_server()
    assert outcome.error is None


async def test_an_unknown_handler_name_is_logged_and_closed(
    start: Any, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bereik.agi")
    server = await start()
    fake = await FakeAsterisk.call(server.port, script="nosuch")
    assert await fake.closed_by_server()
    assert "no FastAGI handler for 'nosuch'" in caplog.text
    assert recorder.failed_names == ["nosuch"]


async def test_a_new_call_is_refused_while_earlier_ones_still_wait_for_their_first_prompt(
    start: Any, recorder: Recorder
) -> None:
    release = asyncio.Event()

    async def slow_start(channel: AgiChannel) -> None:
        await release.wait()  # e.g. their database look-ups are stuck behind a backlog
        await channel.answer()

    server = await start(slow_start, limits=Limits(stall_seconds=0.1), command_timeout=5)
    first = await FakeAsterisk.call(server.port, uniqueid="1.1")
    second = await FakeAsterisk.call(server.port, uniqueid="1.2")
    await asyncio.sleep(0.3)  # the stall is the condition under test: past the 0.2 s bound
    third = await FakeAsterisk.call(server.port, uniqueid="1.3")
    assert await third.closed_by_server(timeout=1)
    assert recorder.reasons == ["stalled"]
    release.set()
    for admitted in (first, second):
        assert await admitted.command() == "ANSWER"  # the admitted calls go on
        await admitted.send("200 result=0\n")
        assert await admitted.closed_by_server()
    for fake in (first, second, third):
        fake.close()


async def test_one_call_waiting_long_for_its_first_prompt_sheds_no_other_call(
    start: Any, recorder: Recorder
) -> None:
    release = asyncio.Event()

    async def one_slow_then_quick(channel: AgiChannel) -> None:
        if channel.env.uniqueid == "1.1":
            await release.wait()  # one slow speech synthesis, say
        await channel.answer()

    server = await start(one_slow_then_quick, limits=Limits(stall_seconds=0.1), command_timeout=5)
    slow = await FakeAsterisk.call(server.port, uniqueid="1.1")
    await asyncio.sleep(0.3)
    quick = await FakeAsterisk.call(server.port, uniqueid="1.2")
    assert await quick.command() == "ANSWER"
    await quick.send("200 result=0\n")
    assert await quick.closed_by_server()
    assert recorder.reasons == []
    release.set()
    assert await slow.command() == "ANSWER"
    await slow.send("200 result=0\n")
    assert await slow.closed_by_server()
    slow.close()
    quick.close()


async def test_a_new_call_is_refused_while_the_event_loop_runs_late(
    start: Any, recorder: Recorder
) -> None:
    handler, _ = handler_doing(lambda ch: ch.answer())
    server = await start(handler, limits=Limits(lag_seconds=0.1), command_timeout=5)
    await asyncio.sleep(0.1)  # let the lag ticker run once
    time.sleep(0.3)  # noqa: ASYNC251 - the loop is blocked: the overload under test
    await asyncio.sleep(0.06)  # the ticker wakes up 0.3 s late and records it
    late = await FakeAsterisk.call(server.port, uniqueid="2.1")
    assert await late.closed_by_server(timeout=1)
    assert recorder.reasons == ["lag"]
    late.close()


async def test_a_prompt_may_take_as_long_as_its_audio(start: Any) -> None:
    handler, outcome = handler_doing(lambda ch: ch.stream_file("long-outage-message", "0"))
    server = await start(handler, command_timeout=0.3, audio_seconds=lambda sound: 1.0)
    fake = await FakeAsterisk.call(server.port)
    assert (await fake.command()).startswith("STREAM FILE")
    await asyncio.sleep(0.8)  # Asterisk is still playing: longer than the command timeout
    await fake.send("200 result=0 endpos=8000\n")
    assert await fake.closed_by_server()
    assert outcome.error is None and outcome.values == [""]


async def test_a_prompt_that_outlasts_its_audio_times_out(start: Any) -> None:
    handler, outcome = handler_doing(lambda ch: ch.stream_file("short", "0"))
    server = await start(handler, command_timeout=0.3, audio_seconds=lambda sound: 0.2)
    fake = await FakeAsterisk.call(server.port)
    assert (await fake.command()).startswith("STREAM FILE")
    began = time.monotonic()
    assert await fake.closed_by_server(timeout=3)
    assert isinstance(outcome.error, AgiTimeout)
    assert 0.45 < time.monotonic() - began < 2.0


async def test_a_request_without_the_secret_is_closed_before_any_command(
    start: Any, recorder: Recorder
) -> None:
    handler, outcome = handler_doing(lambda ch: ch.set_variable("X", "1"))
    server = await start(handler, secret="s3cret-from-the-dialplan")
    for script in ("test", "wrong/test", "s3cret-from-the-dialplanX/test"):
        fake = await FakeAsterisk.call(server.port, script=script)
        assert await fake.closed_by_server()  # no command: the dialplan takes its fallback
        fake.close()
    assert not outcome.done.is_set() and recorder.reasons == ["secret"] * 3
    fake = await FakeAsterisk.call(server.port, script="s3cret-from-the-dialplan/test")
    assert await fake.command() == 'SET VARIABLE "X" "1"'
    await fake.send("200 result=1\n")
    async with asyncio.timeout(2):
        await outcome.done.wait()
    fake.close()
    assert recorder.handled_names == ["test"]


async def test_a_peer_outside_the_allow_list_is_closed_unread(
    start: Any, recorder: Recorder
) -> None:
    handler, outcome = handler_doing(lambda ch: ch.set_variable("X", "1"))
    server = await start(handler, allowed_peers=["10.0.0.0/8"])
    fake = await FakeAsterisk.call(server.port)
    assert await fake.closed_by_server()
    fake.close()
    assert not outcome.done.is_set() and recorder.reasons == ["peer"]


async def test_the_caller_id_is_masked_in_the_log(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bereik.agi")
    handler, outcome = handler_doing(lambda ch: ch.set_variable("X", "1"))
    server = await start(handler)
    fake = await FakeAsterisk.call(server.port)
    assert await fake.command() == 'SET VARIABLE "X" "1"'
    await fake.send("200 result=1\n")
    async with asyncio.timeout(2):
        await outcome.done.wait()
    fake.close()
    assert "06******78" in caplog.text
    assert "0612345678" not in caplog.text
