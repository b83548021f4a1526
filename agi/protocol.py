"""The AGI wire format: the environment block, command quoting and response lines.

Pure functions, no I/O, so the parser can be fuzzed on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qs, urlsplit

_RESPONSE = re.compile(r"^(\d{3})([ -])(.*)$")
_RESULT = re.compile(r"^result=(\S*)(?:\s+\((.*?)\))?\s*(.*)$")


class AgiError(Exception):
    """Base of every error a handler may see from the channel."""


class AgiProtocolError(AgiError):
    """Asterisk sent something that is not an AGI line."""


class AgiHangup(AgiError):
    """The channel is gone (511, result=-1 on a dead channel, or the socket closed)."""


class AgiInvalidCommand(AgiError):
    """510: Asterisk does not know the command."""


class AgiUsageError(AgiError):
    """520: the command's syntax was wrong; `usage` holds Asterisk's explanation."""

    def __init__(self, usage: str) -> None:
        super().__init__(usage)
        self.usage = usage


class AgiCommandFailed(AgiError):
    """The command ran but returned result=-1 (failure, or the channel hung up)."""


class AgiTimeout(AgiError):
    """Asterisk did not answer a command in time."""


@dataclass(frozen=True)
class Response:
    code: int
    result: str = ""
    data: str = ""  # the part in parentheses, e.g. "timeout" or a variable's value
    extra: dict[str, str] = field(default_factory=dict)  # key=value pairs after it (endpos)

    @property
    def result_int(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0


@dataclass(frozen=True)
class Environment:
    """The agi_* header block Asterisk sends first, without the agi_ prefix."""

    values: dict[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def script_path(self) -> str:
        """The handler name: the path of agi://host:port/PATH?query, without slashes."""
        return self._split_url().path.strip("/")

    @property
    def query(self) -> dict[str, str]:
        parsed = parse_qs(self._split_url().query, keep_blank_values=True)
        return {key: values[-1] for key, values in parsed.items()}

    def _split_url(self) -> SplitResult:
        # urlsplit raises ValueError on e.g. "agi://[x/ivr" (an unclosed IPv6 bracket).
        try:
            return urlsplit(self._script_url)
        except ValueError as exc:
            raise AgiProtocolError(
                f"bad agi_network_script {self._script_url[:80]!r}: {exc}"
            ) from None

    @property
    def _script_url(self) -> str:
        script = self.get("network_script")
        return script if "://" in script else f"agi://x/{script}"


def parse_env_line(line: str) -> tuple[str, str]:
    """`agi_callerid: 0612` -> ("callerid", "0612"); raises AgiProtocolError otherwise."""
    key, sep, value = line.partition(":")
    if not sep or not key.startswith("agi_") or " " in key:
        raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
    return key[4:], value.strip()


def parse_response(line: str) -> Response:
    """Parse one complete response line (a 520 block is joined by the reader first)."""
    match = _RESPONSE.match(line)
    if not match:
        raise AgiProtocolError(f"not an AGI response: {line[:80]!r}")
    code, rest = int(match.group(1)), match.group(3)
    if code != 200:
        return Response(code=code, data=rest)
    result = _RESULT.match(rest)
    if not result:
        raise AgiProtocolError(f"200 response without result=: {line[:80]!r}")
    return Response(
        code=200, result=result.group(1), data=result.group(2) or "", extra=_pairs(result.group(3))
    )


def _pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            pairs[key] = value
    return pairs


def is_usage_start(line: str) -> bool:
    return line.startswith("520-")


def is_usage_end(line: str) -> bool:
    return line.startswith("520 ")


def quote(argument: str | int) -> str:
    """One command argument, quoted so spaces, quotes and newlines cannot split the command.

    A newline inside a command would end it and start another: a caller ID such as
    "x\\nEXEC System rm" must never reach Asterisk as two lines.
    """
    text = str(argument).replace("\r", " ").replace("\n", " ")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


_COMMAND_NAME = re.compile(r"[A-Z][A-Z ]*[A-Z]")


def build_command(name: str, *arguments: str | int) -> str:
    if not _COMMAND_NAME.fullmatch(name):
        raise ValueError(f"not an AGI command name: {name!r}")
    return " ".join([name, *(quote(argument) for argument in arguments)])
