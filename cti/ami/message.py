"""AMI messages: an event's headers found in its raw block when read; panoramisk's
`Message` outside.

Every AMI event Bereik receives is parsed here, about twenty per call, and the call
tracker reads about ten of an event's twenty-odd headers. panoramisk's `Message.from_line`
splits every line, builds a dict of all the headers and hands it to `CaseInsensitiveDict`,
which stores each again as a (spelling, value) pair; building all that was most of the
listener's time per event (bench/ami_ingest.py's profile). An event here keeps its block
and a lowered copy of it (one C call each), and `get` finds the header asked for in the
lowered copy (`"\\r\\n<name>: "` at the start of a line) and cuts its value from the block:
the headers nobody reads cost nothing.

The answers are panoramisk's: names match in any case; a name repeated in one spelling
(ChanVariable, Variable, a UserEvent's own Uniqueid beside the channel's) gives the list
of its values, in two spellings the last one's value; a "Result" is URL-unquoted; lines
that are no header are ignored. Where a read finds a repeated name, and for everything that
is not a plain event (responses, a response's body, a block whose first line is not
`Event:`, text whose lowered copy is not the same length), the message takes panoramisk's
rules line by line into its store (`_headers`), as the other readers (`items()`,
iteration) do on first use. tests/unit/test_ami_message.py checks that both parsers agree,
message for message, on a recorded stream and on the odd cases.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote

from panoramisk.message import Message

EOL = "\r\n"
# Responses whose last line is a body, not a header (as panoramisk's from_line).
_HAS_BODY = ("Response: Follows", "Response: Fail")
_EVENT = "Event: "
_MESSAGE = (_EVENT, "Response: ")
_QUOTED = "result"
_SEP = ": "
_CONTENT = "content"
# What `get` searches for each name asked ("\r\n<lowered name>: "), made once per name.
# Names are the code's own (a few dozen); the bound keeps a caller asking for arbitrary
# attribute names (panoramisk's __getattr__ reads any attribute as a header) from growing it.
_NEEDLES: dict[str, str] = {}
_NEEDLES_MAX = 1000
# Needles no block holds (a block has no blank line in it): a name that cannot be a
# header (it holds the separator or a line break), and "content", which is panoramisk's
# name for a response's body, not a header.
_NO_HEADER = sys.intern(EOL + EOL)
_CONTENT_NEEDLE = sys.intern(EOL + EOL + _CONTENT)


def _needle(key: str) -> str:
    needle = _NEEDLES.get(key)
    if needle is None:
        lower = key.lower()
        if lower == _CONTENT:
            needle = _CONTENT_NEEDLE
        elif _SEP in key or "\r" in key or "\n" in key or not key:
            needle = _NO_HEADER
        else:
            # Interned: `get` tells the quoted "Result" by identity, whatever its spelling.
            needle = sys.intern(f"{EOL}{lower}{_SEP}")
        if len(_NEEDLES) < _NEEDLES_MAX:
            _NEEDLES[key] = needle
    return needle


_MISSING = object()
_RESULT_NEEDLE = _needle("Result")
_ACTION_ID, _COMMAND_ID = _needle("ActionID"), _needle("CommandID")


class AmiMessage(Message):  # type: ignore[misc]
    """A panoramisk Message that finds a header in its block when read (see the module's
    docstring). Built by `parse` and `event` only.

    `_raw` is the block with a line break in front (so every header, the first too,
    starts after one) and `_low` its lowered copy, or None once the message reads from its
    store: the store (`_store`: panoramisk's, by lowered name, with each header's
    spelling) is made on first use and kept in step by `__setitem__`."""

    _raw: str
    _low: str | None
    _seen: dict[str, Any]
    _built: dict[str, tuple[str, Any]] | None
    _content: str

    def get(self, key: str, default: Any = None) -> Any:
        # What was read before, by the name as asked: the bus, the listener and the
        # tracker each read an event's name, its time and its channel's ids.
        value = self._seen.get(key)
        if value is not None:
            return value
        low = self._low
        if low is None:
            return self._from_store(key, default)
        needle = _NEEDLES.get(key) or _needle(key)
        start = low.find(needle)
        if start < 0:
            return self._content if needle is _CONTENT_NEEDLE else default
        start += len(needle)
        end = low.find(EOL, start)
        if end < 0:
            end = len(low)
        elif low.find(needle, end) >= 0:
            # Repeated: panoramisk's rules decide (a list, or the last spelling's).
            return self._from_store(key, default)
        value = self._raw[start:end]
        if needle is _RESULT_NEEDLE:
            value = unquote(value).strip()
        self._seen[key] = value
        return value

    def answers_nothing(self) -> bool:
        """Whether this is an event that answers no action (no ActionID, no CommandID):
        the common case, which needs none of panoramisk's matching."""
        low = self._low
        if low is not None:  # an event (see `event`)
            return _ACTION_ID not in low and _COMMAND_ID not in low
        store = self._store
        return "event" in store and "actionid" not in store and "commandid" not in store

    def _from_store(self, key: str, default: Any) -> Any:
        item = self._store.get(key.lower())
        return default if item is None else item[1]

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key.lower()] = (key, value)
        self._low = None  # the store has it now: read from there
        self._seen.clear()

    @property
    def _store(self) -> dict[str, tuple[str, Any]]:
        # A property, not an attribute: CaseInsensitiveDict's __getattr__ answers every
        # missing attribute with a header look-up, so a store made later must be found
        # by the class, never missed.
        store = self._built
        if store is None:
            store = self._built = _headers(self._raw[len(EOL) :].split(EOL), self._content)
        return store

    @_store.setter
    def _store(self, store: dict[str, tuple[str, Any]]) -> None:
        self._built = store


def event(block: str) -> AmiMessage | None:
    """An event's block (stripped, its first line `Event: <name>`), its headers found when
    read."""
    raw = EOL + block
    low = raw.lower()
    if len(low) != len(raw):
        return parse(block)  # lowering changed the text's length: positions differ
    if low.count("\r\nevent: ") != 1:
        return parse(block)  # a second Event header: panoramisk's rules decide
    end = block.find(EOL)
    message = _message(raw, low, None, "")
    # Its name, which everyone reads, from its first line.
    message._seen["Event"] = block[len(_EVENT) : end] if end >= 0 else block[len(_EVENT) :]
    return message


def parse(block: str) -> AmiMessage | None:
    """One AMI message (headers separated by CRLF, no blank line, stripped) by panoramisk's
    rules line by line, or None when it is neither an event nor a response."""
    lines = block.split(EOL)
    content = ""
    if lines[0].startswith(_HAS_BODY):
        content = lines.pop()
        while not content and lines:
            content = lines.pop()
    # panoramisk's rule: a header spelled "Event" or "Response" (another of the same name
    # may come later, whose spelling and value the store keeps).
    if not any(line.startswith(_MESSAGE) for line in lines):
        return None
    store = _headers(lines, content)
    return _message(EOL + block, None, store, content)


def _message(
    raw: str, low: str | None, store: dict[str, tuple[str, Any]] | None, content: str
) -> AmiMessage:
    # Not Message.__init__: it would fill the store a header at a time, the cost avoided.
    # Plain assignments, not __dict__.update: the attributes then stay in the object, and
    # no dict is made for them (one object fewer per event for the garbage collector).
    message: AmiMessage = AmiMessage.__new__(AmiMessage)
    message._raw = raw
    message._low = low
    message._seen = {}
    message._built = store
    message._content = content
    message.manager = None
    return message


def _headers(lines: list[str], content: str) -> dict[str, tuple[str, Any]]:
    """panoramisk's store of `lines` (no body line among them): by lowered name, the
    (spelling, value) of each header; a name repeated in one spelling gives the list of
    its values (ChanVariable, Variable), in another spelling the last one's value."""
    store: dict[str, tuple[str, Any]] = {}
    for line in lines:
        key, sep, value = line.partition(_SEP)
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
            store[lower] = (key, [seen[1], value])
    store[_CONTENT] = (_CONTENT, content)
    return store
