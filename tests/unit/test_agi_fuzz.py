"""Property tests of the AGI wire format (agi/protocol.py) and of the FastAGI server's reading.

Whatever Asterisk (or anything that connects to the FastAGI port) sends, the parsers either
return a value or raise the typed AgiProtocolError; nothing else may escape, because an
untyped exception in a handler means a crash log instead of a clean dialplan fallback. And a
caller ID, whatever it holds, must reach Asterisk as one argument of one command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agi.protocol import (
    AgiError,
    AgiProtocolError,
    Environment,
    Response,
    build_command,
    parse_env_line,
    parse_response,
    quote,
)
from agi.server import AgiChannel, FastAgiServer, read_environment
from tests.support.agi_args import asterisk_args
from tests.support.agi_writer import NullWriter

# Text as it may arrive: any code point, and the characters that matter to the format.
wire_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(list(' "\\=()-:\r\n\t520agi_result'))),
    max_size=200,
)


@given(wire_text)
def test_a_response_line_parses_or_raises_the_typed_error(line: str) -> None:
    try:
        response = parse_response(line)
    except AgiProtocolError:
        return
    assert isinstance(response, Response)
    assert 100 <= response.code <= 999
    assert isinstance(response.result_int, int)


@given(
    code=st.sampled_from([200]),
    result=st.integers(-1, 255),
    data=st.text(st.characters(blacklist_characters="()\r\n"), max_size=30),
    endpos=st.integers(0, 10**6),
)
def test_a_well_formed_200_keeps_result_data_and_pairs(
    code: int, result: int, data: str, endpos: int
) -> None:
    response = parse_response(f"{code} result={result} ({data}) endpos={endpos}")
    assert response.result == str(result)
    assert response.data == data
    assert response.extra == {"endpos": str(endpos)}


@given(wire_text)
def test_an_environment_line_parses_or_raises_the_typed_error(line: str) -> None:
    try:
        key, value = parse_env_line(line)
    except AgiProtocolError:
        return
    assert " " not in key and value == value.strip()


@given(st.dictionaries(st.sampled_from(["network_script", "request", "uniqueid"]), wire_text))
def test_the_handler_name_and_query_of_any_header_are_strings_or_the_typed_error(
    values: dict[str, str],
) -> None:
    env = Environment(values)
    try:
        assert isinstance(env.script_path, str)
        assert all(isinstance(v, str) for v in env.query.values())
    except AgiProtocolError:
        pass


def test_a_broken_url_in_the_header_is_a_protocol_error_not_a_crash() -> None:
    env = Environment({"network_script": "agi://[x/ivr"})
    with pytest.raises(AgiProtocolError):
        _ = env.script_path


@given(st.lists(st.one_of(wire_text, st.integers(-(10**9), 10**9)), max_size=5))
def test_any_arguments_make_one_line_that_asterisk_splits_back_into_them(
    arguments: list[str | int],
) -> None:
    line = build_command("SET VARIABLE", *arguments)
    assert "\n" not in line and "\r" not in line
    expected = [str(a).replace("\r", " ").replace("\n", " ") for a in arguments]
    assert asterisk_args(line) == ["SET", "VARIABLE", *expected]


def test_a_caller_id_cannot_inject_a_second_command() -> None:
    hostile = 'Jan" \nEXEC System "rm -rf /'
    line = build_command("SET VARIABLE", "CALLERID(name)", hostile)
    assert line.count("\n") == 0
    assert asterisk_args(line) == ["SET", "VARIABLE", "CALLERID(name)", hostile.replace("\n", " ")]
    assert quote("a\\b") == '"a\\\\b"'


@pytest.mark.parametrize("name", ["set variable", "EXEC\nSYSTEM", "", "A", "NOOP;"])
def test_command_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        build_command(name)


# The stream readers, fed arbitrary bytes in arbitrary pieces.

chunks = st.lists(st.binary(max_size=64), max_size=12)


async def _stream(pieces: list[bytes], limit: int = 2**16) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    for piece in pieces:
        reader.feed_data(piece)
    reader.feed_eof()
    return reader


@given(chunks)
def test_reading_a_header_from_any_bytes_gives_an_environment_none_or_the_typed_error(
    pieces: list[bytes],
) -> None:
    async def read() -> Environment | None:
        return await read_environment(await _stream(pieces))

    try:
        result = asyncio.run(read())
    except AgiProtocolError:
        return
    assert result is None or isinstance(result, Environment)


@given(chunks, st.integers(16, 256))
def test_a_command_answered_with_any_bytes_returns_or_raises_a_typed_agi_error(
    pieces: list[bytes], limit: int
) -> None:
    async def run() -> None:
        channel = AgiChannel(
            Environment({"uniqueid": "1.1"}),
            await _stream(pieces, limit=limit),
            NullWriter(),  # type: ignore[arg-type]
            command_timeout=1.0,
        )
        with contextlib.suppress(AgiError):
            await channel.command("NOOP")

    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 1.0  # ends on EOF at once; no waiting, no spinning


# The server itself, fed garbage over a real socket.


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=2048), close_early=st.booleans())
def test_the_server_closes_a_garbage_connection_and_its_loop_stays_responsive(
    garbage: bytes, close_early: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bereik.agi")
    asyncio.run(_garbage_session(garbage, close_early))


async def _garbage_session(garbage: bytes, close_early: bool) -> None:
    server = FastAgiServer({}, port=0, header_timeout=0.3, command_timeout=0.3)
    await server.start()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(garbage)
        await writer.drain()
        if close_early:
            writer.write_eof()
        # The server answers garbage with nothing and closes: EOF within the header timeout.
        async with asyncio.timeout(2):
            rest = await reader.read()
        assert rest == b""
        writer.close()
        assert server.active == 0
    finally:
        stop.set()
        await beat
        await server.close()
    assert max(gaps, default=0) < 0.25, f"the event loop stalled for {max(gaps):.3f} s"
