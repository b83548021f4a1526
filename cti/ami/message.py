"""AMI messages parsed in one pass: panoramisk's `Message`, built without its generic paths.

Every AMI event Bereik receives is parsed here, about twenty per call, and the call
tracker reads each several times. panoramisk's `Message.from_line` builds a dict of the
headers and hands it to `CaseInsensitiveDict`, whose `MutableMapping.update` stores the
headers again one `__setitem__` at a time, and every `get` goes through `Mapping.get`'s
try/except around `__getitem__`: together most of the listener's parsing time
(bench/README.md, profile per part). `parse` fills the case-insensitive store directly
and `AmiMessage.get` reads it directly. The result is a panoramisk `Message` (same
`id`, `action_id`, `success`, `content`, attribute access), so the protocol's response
matching and every subscriber work on it unchanged; tests/unit/test_ami_message.py checks
that both parsers agree on a recorded stream.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from panoramisk.message import Message

EOL = "\r\n"
# Responses whose last line is a body, not a header (as panoramisk's from_line).
_HAS_BODY = ("Response: Follows", "Response: Fail")
_QUOTED = "result"


class AmiMessage(Message):  # type: ignore[misc]
    """A panoramisk Message whose `get` is one dict look-up."""

    def get(self, key: str, default: Any = None) -> Any:
        item = self._store.get(key.lower())
        return default if item is None else item[1]


def parse(block: str) -> AmiMessage | None:
    """One AMI message (headers separated by CRLF, no blank line), or None when it is
    neither an event nor a response (panoramisk's rule)."""
    lines = block.split(EOL)
    content = ""
    if lines[0].startswith(_HAS_BODY):
        content = lines.pop()
        while not content and lines:
            content = lines.pop()
    store: dict[str, tuple[str, Any]] = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        lower = key.lower()
        if lower == _QUOTED:
            value = unquote(value).strip()
        seen = store.get(lower)
        if seen is None or seen[0] != key:
            store[lower] = (key, value)
        elif isinstance(seen[1], list):
            seen[1].append(value)
        else:
            # A repeated header (ChanVariable, Variable) becomes a list, as in panoramisk.
            store[lower] = (key, [seen[1], value])
    if store.get("event", ("",))[0] != "Event" and store.get("response", ("",))[0] != "Response":
        return None
    store["content"] = ("content", content)
    message: AmiMessage = AmiMessage.__new__(AmiMessage)
    message._store = store
    message.manager = None
    return message
